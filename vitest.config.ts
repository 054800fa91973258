import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    // Two cores: end-to-end files each start processes and worker threads of their own.
    maxWorkers: 2,
  },
});

// The house rules for imports, checked by `npm test` (and so by CI): no circles, and imports point
// down the floors only: cli -> agent -> precopy -> domain, transport -> protocol, dirtylog, util
// -> errors. Only the transport speaks WebSocket; the protocol does no I/O.
//
// It reads the build in dist/ (the checker cannot parse this TypeScript version's sources), so it
// sees what runs. Imports of types only, erased by the compiler, are held to the same rules by
// scripts/check-type-imports.mjs, which runs them over a plain-JavaScript copy of src's imports.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', comment: 'Import cycles make rooms that cannot be read or moved alone.', from: {}, to: { circular: true } },
    {
      name: 'errors-at-the-bottom',
      severity: 'error',
      comment: 'src/errors.ts is the ground floor: it imports nothing of the project.',
      from: { path: '^dist/errors\\.js$' },
      to: { path: '^dist/' },
    },
    {
      name: 'floor-2-looks-down-only',
      severity: 'error',
      comment: 'protocol, dirtylog and util import only each other and errors.',
      from: { path: '^dist/(protocol|dirtylog|util)/' },
      to: { path: '^dist/(domain|transport|precopy|agent|cli|pool|index\\.js)' },
    },
    {
      name: 'floor-3-looks-down-only',
      severity: 'error',
      comment: 'domain and transport are siblings: neither imports the other, nor anything above.',
      from: { path: '^dist/(domain|transport)/' },
      to: { path: '^dist/(precopy|agent|cli|pool|index\\.js)' },
    },
    { name: 'domain-not-transport', severity: 'error', from: { path: '^dist/domain/' }, to: { path: '^dist/transport/' } },
    { name: 'transport-not-domain', severity: 'error', from: { path: '^dist/transport/' }, to: { path: '^dist/domain/' } },
    {
      name: 'precopy-looks-down-only',
      severity: 'error',
      from: { path: '^dist/precopy/' },
      to: { path: '^dist/(agent|cli|pool|index\\.js)' },
    },
    {
      name: 'pool-below-cli',
      severity: 'error',
      comment: 'The pool coordinates hosts through the agent layer; only the CLI and the entry sit above it.',
      from: { path: '^dist/pool/' },
      to: { path: '^dist/(cli|index\\.js)' },
    },
    {
      name: 'agent-below-pool',
      severity: 'error',
      from: { path: '^dist/agent/' },
      to: { path: '^dist/pool/' },
    },
    {
      name: 'agent-below-cli',
      severity: 'error',
      from: { path: '^dist/agent/' },
      to: { path: '^dist/(cli|index\\.js)' },
    },
    {
      name: 'engine-free-of-websockets',
      severity: 'error',
      comment: 'The engine talks to the Transport interface only; WebSocket is the transport\'s business.',
      from: { path: '^dist/precopy/' },
      to: { path: '((^|/)node_modules/ws/|^dist/transport/ws-)' },
    },
    {
      name: 'only-the-transport-speaks-websocket',
      severity: 'error',
      from: { path: '^dist/', pathNot: '^dist/transport/' },
      to: { path: '(^|/)node_modules/ws/' },
    },
    {
      name: 'protocol-does-no-io',
      severity: 'error',
      comment: 'Encoding returns bytes and decoding takes bytes: no sockets, files or processes.',
      from: { path: '^dist/protocol/' },
      to: { dependencyTypes: ['core'], path: '^(node:)?(net|http|https|tls|fs|fs/promises|child_process|worker_threads)$' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '\\.d\\.ts$|\\.map$' },
  },
};

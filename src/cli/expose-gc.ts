/**
 * Imported first by the livemig command and bench/latency.js: turns on V8's collector for this
 * process. The engine collects garbage just before a guest is likely to pause, on both sides, so
 * that no collection lands in the pause; Node offers the collector only with --expose-gc, which a
 * command installed as a script cannot pass to node.
 */

import v8 from 'node:v8';
import vm from 'node:vm';

v8.setFlagsFromString('--expose-gc');
const global = globalThis as { gc?: unknown };
global.gc ??= vm.runInNewContext('gc');

// The fault matrix's rule that the guest never ran on both hosts, on records made by hand: it
// must catch a double run that the end state hides, and pass every honest way a migration ends.
import { expect, test } from 'vitest';
import { neverBothProblems, targetRan, type GuestMoment, type Host } from './helpers/guest-timeline.js';

const T0 = 1_700_000_000_000;
const at = (ms: number, host: Host, runs: boolean, what: string): GuestMoment => ({ at: T0 + ms, host, runs, what });

const booted = at(0, 'source', true, 'booted');
const paused = at(100, 'source', false, 'paused');

test('a target that resumed and later discarded while the source also resumed is a double run, though neither runs it at the end', () => {
  const moments = [
    booted,
    paused,
    at(120, 'target', true, 'resumed'),
    at(150, 'source', true, 'resumed'),
    at(200, 'target', false, 'discarded'),
    at(300, 'source', false, 'destroyed'),
  ];
  expect(neverBothProblems(moments, T0 + 400)).toEqual([
    'the guest ran on both hosts at once for 50 ms (source: resumed at +150 ms until destroyed at +300 ms; target: resumed at +120 ms until discarded at +200 ms)',
  ]);
});

test('a target that ran the guest and discarded it before the source resumed its copy is two histories of one guest', () => {
  const moments = [booted, paused, at(120, 'target', true, 'resumed'), at(130, 'target', false, 'discarded'), at(150, 'source', true, 'resumed')];
  expect(neverBothProblems(moments, T0 + 400)).toEqual([
    'the guest ran on the target (resumed at +120 ms until discarded at +130 ms) and again on the source from the state it handed over (resumed at +150 ms until the end)',
  ]);
});

test('a source that never paused while the target runs the guest runs it at once with the target until the end', () => {
  const problems = neverBothProblems([booted, at(120, 'target', true, 'resumed')], T0 + 400);
  expect(problems).toEqual(['the guest ran on both hosts at once for 280 ms (source: booted at +0 ms until the end; target: resumed at +120 ms until the end)']);
});

test('the honest endings hold: handed over, kept on the source, lost with a killed source, or a target that died after running it', () => {
  const handedOver = [booted, paused, at(120, 'target', true, 'resumed'), at(150, 'source', false, 'destroyed')];
  const keptOnSource = [booted, paused, at(150, 'source', true, 'resumed'), at(160, 'target', false, 'discarded')];
  const lost = [booted, paused, at(150, 'source', false, 'killed'), at(160, 'target', false, 'discarded')];
  const targetDied = [booted, paused, at(120, 'target', true, 'resumed'), at(130, 'target', false, 'agent killed')];
  for (const moments of [handedOver, keptOnSource, lost, targetDied]) expect(neverBothProblems(moments, T0 + 400)).toEqual([]);
  expect([handedOver, keptOnSource, lost, targetDied].map((m) => targetRan(m))).toEqual([true, false, false, true]);
});

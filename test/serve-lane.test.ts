// The server's bounded decode lanes: tasks given up on while they wait leave the queue and never run.
import { Lane } from '../lib/serve/decode-pool';
import { HttpError } from '../lib/serve/http-error';

test('a waiting task whose signal aborts leaves the queue at once, never runs, and the lane keeps its count', async () => {
  const lane = new Lane('small', 1, 2, 1);
  let finishFirst = () => {};
  const ran: string[] = [];
  const first = lane.run(async () => {
    ran.push('first');
    await new Promise<void>((resolve) => (finishFirst = resolve));
  });
  const abandon = new AbortController();
  const abandoned = lane.run(async () => void ran.push('abandoned'), abandon.signal);
  const kept = lane.run(async () => void ran.push('kept'));
  expect(lane.load).toEqual({ active: 1, waiting: 2 });
  const gone = new HttpError(504, 'the prediction timed out');
  abandon.abort(gone);
  await expect(abandoned).rejects.toBe(gone);
  expect(lane.load).toEqual({ active: 1, waiting: 1 });
  // its place is free: one more may queue
  const later = lane.run(async () => void ran.push('later'));
  finishFirst();
  await Promise.all([first, kept, later]);
  expect(ran).toEqual(['first', 'kept', 'later']);
  expect(lane.load).toEqual({ active: 0, waiting: 0 });
});

test('a task aborted before it is run does not run, and no place in the lane is lost', async () => {
  const lane = new Lane('large', 1, 1, 1);
  const before = new AbortController();
  before.abort(new Error('gone already'));
  await expect(lane.run(async () => 'ran', before.signal)).rejects.toThrow('gone already');
  expect(lane.load).toEqual({ active: 0, waiting: 0 });

  // aborted in the same tick as the running task finishes: the lane ends empty and takes the next task
  let finishFirst = () => {};
  const first = lane.run(() => new Promise<void>((resolve) => (finishFirst = resolve)));
  const late = new AbortController();
  const lateTask = lane.run(async () => 'ran', late.signal);
  finishFirst();
  late.abort(new Error('gone at its turn'));
  await first;
  await expect(lateTask).rejects.toThrow('gone at its turn');
  expect(lane.load).toEqual({ active: 0, waiting: 0 });
  await expect(lane.run(async () => 'next')).resolves.toBe('next');
});

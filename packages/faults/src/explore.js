import { CrashReplay, crashStates, isWritePoint } from './crash.js';
import { yielder } from './util.js';
/**
 * Crashes after every write point of a recorded log: replays the log event
 * by event and, after each write, truncate or flush, checks up to
 * `statesPerPoint` post-crash states (the kill state, the durable state and
 * chosen subsets of the volatile sectors). Also crashes once before the first
 * write point (at `from`).
 */
export async function exploreCrashes(options) {
    const replay = new CrashReplay(options.log);
    const from = options.from ?? 0;
    const per = options.statesPerPoint ?? 16;
    const stop = options.stopOnFailure ?? true;
    const result = { points: 0, states: 0, byLabel: {}, violations: [] };
    const breathe = yielder();
    const runPoint = async () => {
        result.points++;
        const point = replay.position - 1;
        for (const state of crashStates(replay.model, options.rng, per, options.cwd)) {
            if (options.maxStates !== undefined && result.states >= options.maxStates)
                return false;
            result.states++;
            await breathe();
            result.byLabel[state.label] = (result.byLabel[state.label] ?? 0) + 1;
            let message;
            try {
                message = await options.check(state.vfs, state, point);
            }
            catch (err) {
                message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
            }
            if (message) {
                result.violations.push({
                    point, event: options.log[point], label: state.label,
                    kept: state.kept.map((k) => (k ? '1' : '0')).join(''), message,
                });
                if (stop)
                    return false;
            }
        }
        return true;
    };
    for (;;) {
        const index = replay.position;
        const event = replay.step();
        if (!event)
            break;
        if (event.type === 'mark')
            options.onMark?.(event.label, event.data, index);
        if (index < from)
            continue;
        if (!isWritePoint(event))
            continue;
        if (!(await runPoint()))
            break;
    }
    return result;
}

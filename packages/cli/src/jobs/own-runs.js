import { COPY_DEPTH, CopyPipeline, yieldToEventLoop } from './common.js';
/** Totals of `image`'s own runs, and the few that reach `guard` (see OwnRunsSurvey). */
export async function surveyOwnRuns(image, guard) {
    const survey = { total: 0, dataEnd: 0, anyRun: false, guarded: [] };
    for await (const run of image.map()) {
        if (run.depth !== 0)
            continue;
        survey.anyRun = true;
        survey.total += run.length;
        survey.dataEnd = Math.max(survey.dataEnd, run.start + run.length);
        if (touches(run, guard))
            survey.guarded.push({ start: run.start, length: run.length });
    }
    return survey;
}
/** `image`'s own runs that reach `ranges` (a probe guard's few bytes: a bounded list). */
export async function ownRunsTouching(image, ranges) {
    return (await surveyOwnRuns(image, ranges)).guarded;
}
/**
 * Copies `from`'s own runs into the same offsets of `into`, in `chunk`-sized
 * pieces aligned to `chunk`, several in flight (reading one overlaps writing
 * another), calling `onBytes` with each piece's length once it is written.
 * Every write has finished when it returns; on failure every piece in flight
 * has settled before it throws (the caller may close the images at once).
 * Nothing is flushed: that is the caller's step.
 */
export async function copyOwnRuns(from, into, chunk, onBytes) {
    const pipeline = new CopyPipeline(COPY_DEPTH, () => new Uint8Array(chunk));
    try {
        for await (const run of from.map()) {
            if (run.depth !== 0)
                continue;
            const end = run.start + run.length;
            for (let pos = run.start; pos < end;) {
                const n = Math.min(chunk - (pos % chunk), end - pos);
                const at = pos;
                await pipeline.start(async (buf) => {
                    const data = buf.subarray(0, n);
                    await from.readInto(at, data);
                    await into.write(at, data);
                    onBytes(n);
                });
                pos += n;
                await yieldToEventLoop();
            }
        }
        await pipeline.drain();
    }
    catch (err) {
        await pipeline.settle();
        throw err;
    }
}
function touches(run, ranges) {
    return ranges.some((r) => run.start < r.start + r.length && r.start < run.start + run.length);
}

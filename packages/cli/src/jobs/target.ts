/** How convert and dd write their target: @blk/jobs' planTarget and TargetWriter (see its target.ts). */
export { planTarget, TargetWriter, tempNameFor, type TargetPlan } from '@blk/jobs';

/**
 * Workflow interceptors that report operation and rollout metrics through a sink, without touching the
 * workflows themselves. Added to the worker's bundle via `interceptors.workflowModules`. Sinks issue no
 * commands, so histories made with or without this module replay the same; the worker registers the
 * sink with `callDuringReplay: false`, so a replay (cache eviction, another worker) counts nothing twice.
 */
import { ApplicationFailure, ContinueAsNew, isCancellation, proxySinks, workflowInfo, type Sinks, type WorkflowInterceptors } from '@temporalio/workflow';

export interface PtcMetricsSinks extends Sinks {
  ptcMetrics: {
    operationStarted(kind: string): void;
    operationEnded(kind: string, outcome: string, seconds: number, residue: number): void;
    throttleWait(kind: string, seconds: number): void;
    rolloutStarted(): void;
    rolloutEnded(state: string): void;
    rolloutHostEnded(state: string): void;
  };
}

/** The operation kind of a workflow type, or null when its runs are not host operations. */
const OPERATION_KIND: Record<string, string> = { passthroughWorkflow: 'attach', releaseWorkflow: 'detach' };

/** A rollout's end state from its stop reason (the sentences rollout-workflow.ts writes). */
export function rolloutEndState(stopReason: string | null): string {
  if (stopReason === null) return 'completed';
  if (stopReason === 'cancelled') return 'cancelled';
  if (stopReason.startsWith('canary ') || stopReason.startsWith('failures ')) return 'stopped_by_failures';
  if (stopReason.startsWith('the window closes')) return 'window_closed';
  return 'stopped';
}

/** How a failed operation ended, from the details the saga attaches to its failure. */
function failedOperation(err: unknown): { outcome: string; residue: number } {
  if (isCancellation(err)) return { outcome: 'cancelled', residue: 0 };
  if (err instanceof ApplicationFailure) {
    const details = err.details?.[0] as { outcome?: unknown; residue?: unknown } | undefined;
    const outcome = typeof details?.outcome === 'string' ? details.outcome : 'failed';
    return { outcome, residue: Array.isArray(details?.residue) ? details.residue.length : 0 };
  }
  return { outcome: 'failed', residue: 0 };
}

const { ptcMetrics } = proxySinks<PtcMetricsSinks>();

/** A string field of a workflow result, or `unknown` (results are plain data; anything else is a bug elsewhere). */
const field = (result: unknown, key: string): string => {
  const v = (result as Record<string, unknown> | null)?.[key];
  return typeof v === 'string' ? v : 'unknown';
};

export const interceptors = (): WorkflowInterceptors => {
  const { workflowType } = workflowInfo();
  const kind = OPERATION_KIND[workflowType] ?? null;
  const seconds = (): number => (Date.now() - workflowInfo().startTime.getTime()) / 1000;
  return {
    inbound: [
      {
        async execute(input, next) {
          // A continued run is the same rollout: count its start once, its end once.
          const continued = workflowInfo().continuedFromExecutionRunId !== undefined;
          if (kind) ptcMetrics.operationStarted(kind);
          else if (workflowType === 'rolloutWorkflow' && !continued) ptcMetrics.rolloutStarted();
          try {
            const result: unknown = await next(input);
            if (kind) ptcMetrics.operationEnded(kind, field(result, 'outcome'), seconds(), 0);
            else if (workflowType === 'rolloutWorkflow') ptcMetrics.rolloutEnded(rolloutEndState((result as { stopReason?: string | null }).stopReason ?? null));
            else if (workflowType === 'hostRolloutWorkflow') ptcMetrics.rolloutHostEnded(field(result, 'state'));
            return result;
          } catch (err) {
            if (!(err instanceof ContinueAsNew)) {
              if (kind) {
                const { outcome, residue } = failedOperation(err);
                ptcMetrics.operationEnded(kind, outcome, seconds(), residue);
              } else if (workflowType === 'rolloutWorkflow') ptcMetrics.rolloutEnded(isCancellation(err) ? 'cancelled' : 'failed');
              else if (workflowType === 'hostRolloutWorkflow') ptcMetrics.rolloutHostEnded(isCancellation(err) ? 'cancelled' : 'failed');
            }
            throw err;
          }
        },
      },
    ],
    outbound: [
      {
        // In the operation workflows the only durable timer is the throttle's wait for a hotplug slot.
        async startTimer(input, next) {
          if (kind) ptcMetrics.throttleWait(kind, input.durationMs / 1000);
          return next(input);
        },
      },
    ],
  };
};

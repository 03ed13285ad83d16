import {
  ApplicationFailure,
  ActivityFailure,
  CancellationScope,
  log,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { PassthroughActivities } from '../activities/passthrough-activities.js';
import { ErrorCode, describeZodError, isErrorCode } from '../schemas/errors.js';
import { PassthroughRequest, type PassthroughRequestInput, type PassthroughResult, type PassthroughStep } from '../schemas/passthrough.js';
import { preflight } from '../policy/passthrough-policy.js';
import { type PassthroughProgress, passthroughProgressQuery } from './definitions.js';

// One profile per kind of call. Agent commands are short; permanent errors are marked non-retryable by
// the activity, so retries only ever repeat a call the agent's journal makes idempotent.
const hostOp = { startToCloseTimeout: '1 minute', retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 5 } } as const;
const rebootWait = { startToCloseTimeout: '15 minutes', heartbeatTimeout: '20s', retry: { maximumAttempts: 1 } } as const;

const agent = proxyActivities<PassthroughActivities>(hostOp);
const boot = proxyActivities<Pick<PassthroughActivities, 'awaitNewBoot'>>(rebootWait);

/** The code and sentence of whatever failed, however deep Temporal wrapped it. */
export function failureInfo(err: unknown): { code: ErrorCode; message: string } {
  let cur: unknown = err;
  while (cur instanceof ActivityFailure && cur.cause) cur = cur.cause;
  if (cur instanceof ApplicationFailure && isErrorCode(cur.type)) return { code: cur.type, message: cur.message };
  return { code: ErrorCode.OPERATION_FAILED, message: cur instanceof Error ? cur.message : String(cur) };
}

/**
 * One device → one guest: preflight (inspect + policy) → hide → bind → verify → attach. Each step with
 * an effect pushes its inverse; on failure the inverses run newest-first in a non-cancellable scope
 * and the workflow fails with the original error's code.
 */
export async function passthroughWorkflow(input: PassthroughRequestInput): Promise<PassthroughResult> {
  const parsed = PassthroughRequest.safeParse(input);
  if (!parsed.success) throw ApplicationFailure.nonRetryable(`invalid passthrough request: ${describeZodError(parsed.error, 'request')}`, ErrorCode.INVALID_INPUT);
  const req = parsed.data;
  const opBase = workflowInfo().workflowId;
  const opId = (step: string): string => `${opBase}#${step}`;

  const progress: PassthroughProgress = { step: 'preflight', steps: [], waitingFor: null };
  setHandler(passthroughProgressQuery, () => progress);
  const record = (step: PassthroughStep, detail: string): void => {
    progress.step = step;
    progress.steps.push({ step, detail });
    log.info(detail, { step, hostId: req.hostId, bdf: req.bdf });
  };
  const compensations: Array<{ what: string; undo: () => Promise<unknown> }> = [];

  const inv = await agent.inspectHost(req.hostId, opId('inspect'));
  const decision = preflight(inv, req);
  if (!decision.ok) throw ApplicationFailure.nonRetryable(decision.message, decision.code);
  const { plan } = decision;
  record('preflight', `${req.bdf} → ${req.guest}: strategy ${plan.strategy}, attach ${plan.mode}${plan.devicesToHide.length > 1 ? `, with IOMMU companions ${plan.devicesToHide.filter((b) => b !== req.bdf).join(' ')}` : ''}`);
  if (plan.alreadyDone) {
    record('attach', `${req.bdf} is already attached to ${req.guest}; nothing to do`);
    progress.step = 'done';
    return { hostId: req.hostId, bdf: req.bdf, guest: req.guest, outcome: 'attached', strategy: null, mode: null, guestRebootNeeded: false, steps: progress.steps, error: null };
  }

  try {
    for (const bdf of plan.devicesToHide) {
      const hidden = await agent.hideDevice(req.hostId, bdf, opId(`hide:${bdf}`));
      if (hidden.changed) compensations.unshift({ what: `unhide ${bdf}`, undo: () => agent.unhideDevice(req.hostId, bdf, opId(`undo-hide:${bdf}`)) });
      record('hide', `${bdf} added to pciback hide= in ${hidden.file}${hidden.changed ? '' : ' (already there)'}`);
    }

    if (plan.strategy === 'reboot') {
      const { previousBootId } = await agent.rebootHost(req.hostId, opId('reboot'));
      progress.waitingFor = `host ${req.hostId} to come back from its reboot`;
      record('bind', `rebooting ${req.hostId} so pciback claims the hidden devices at boot`);
      await boot.awaitNewBoot(req.hostId, previousBootId);
      progress.waitingFor = null;
      for (const bdf of plan.devicesToHide) {
        compensations.unshift({ what: `rebind ${bdf} to its host driver`, undo: () => agent.unbindDevice(req.hostId, bdf, null, opId(`undo-bind:${bdf}`)) });
      }
    } else {
      for (const bdf of plan.devicesToHide) {
        const bound = await agent.bindDevice(req.hostId, bdf, plan.strategy, opId(`bind:${bdf}`));
        if (bound.changed) {
          compensations.unshift({ what: `rebind ${bdf} to ${bound.originalDriver ?? 'its host driver'}`, undo: () => agent.unbindDevice(req.hostId, bdf, bound.originalDriver, opId(`undo-bind:${bdf}`)) });
        }
        record('bind', `${bdf} bound to pciback (${plan.strategy})${bound.changed ? `, was on ${bound.originalDriver ?? 'no driver'}` : ' (already)'}`);
      }
    }

    for (const bdf of plan.devicesToHide) {
      const seen = await agent.verifyDevice(req.hostId, bdf, 'pciback', opId(`verify:${bdf}`));
      record('verify', `${bdf}: driver ${seen.driver ?? 'none'}, in pciback slots, assignable`);
    }

    compensations.unshift({ what: `detach ${req.bdf} from ${req.guest}`, undo: () => agent.detachDevice(req.hostId, req.bdf, req.guest, plan.mode, opId('undo-attach')) });
    const attached = await agent.attachDevice(req.hostId, req.bdf, req.guest, plan.mode, req.allowInsecurePV, opId('attach'));
    record('attach', `${req.bdf} attached to ${req.guest}: live ${attached.hot}, in config ${attached.cold}${plan.attachNote ? ` (${plan.attachNote})` : ''}`);
    progress.step = 'done';
    return {
      hostId: req.hostId,
      bdf: req.bdf,
      guest: req.guest,
      outcome: 'attached',
      strategy: plan.strategy,
      mode: plan.mode,
      guestRebootNeeded: attached.guestRebootNeeded || plan.guestRebootNeeded,
      steps: progress.steps,
      error: null,
    };
  } catch (err) {
    const original = failureInfo(err);
    const residue = await compensate(compensations, (detail) => record('compensate', detail));
    const outcome = residue.length === 0 ? 'compensated' : 'needs-attention';
    throw ApplicationFailure.create({
      type: original.code,
      message: residue.length === 0 ? `${original.message} (undone: the host is as before)` : `${original.message}; undo incomplete, left on the host: ${residue.join('; ')}`,
      nonRetryable: true,
      details: [{ outcome, steps: progress.steps, residue }],
    });
  }
}

/** Runs the inverses newest-first, never cancelled; returns what could not be undone. */
async function compensate(compensations: Array<{ what: string; undo: () => Promise<unknown> }>, note: (detail: string) => void): Promise<string[]> {
  const residue: string[] = [];
  await CancellationScope.nonCancellable(async () => {
    for (const c of compensations) {
      try {
        await c.undo();
        note(`undone: ${c.what}`);
      } catch (err) {
        const info = failureInfo(err);
        residue.push(`${c.what} (${info.code}: ${info.message})`);
        note(`could not ${c.what}: ${info.code}`);
      }
    }
  });
  return residue;
}

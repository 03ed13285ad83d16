import { ApplicationFailure, isCancellation, patched } from '@temporalio/workflow';
import { ErrorCode } from '../schemas/errors.js';
import { PassthroughRequest, type PassthroughRequestInput, type PassthroughResult } from '../schemas/passthrough.js';
import type { HostInventory } from '../schemas/inventory.js';
import { preflight, takesHotplug } from '../policy/passthrough-policy.js';
import { agent, beginOperation, bootWaiter, parseWorkflowInput, shortStepAgent, undoAgent } from './saga-kit.js';

export { failureInfo } from './saga-kit.js';

/** Reboots survived mid-operation before the saga gives up: a host that keeps rebooting needs a person. */
const MAX_UNEXPECTED_REBOOTS = 3;

/**
 * One device → one guest: preflight (inspect + policy + throttle) → hide → bind (dynamic, reload or
 * reboot) → verify → throttle gate → attach. Each step with an effect pushes its inverse; on failure or
 * cancellation the inverses run newest-first in a non-cancellable scope. An unexpected reboot (a new
 * boot id in a reply) sends the saga back to bind: a config-file hide survives a reboot, a dynamic bind
 * and a hotplug do not, and every step is idempotent by state.
 *
 * `hotplugLedger` is the device's recent hotplug times, handed over by the host entity that serializes
 * operations on the host, so the throttle here sees every hotplug on the device.
 */
export async function passthroughWorkflow(input: PassthroughRequestInput, hotplugLedger: number[] = []): Promise<PassthroughResult> {
  const req = parseWorkflowInput(PassthroughRequest, input, 'passthrough request');
  const op = beginOperation(req, hotplugLedger);
  const quick = shortStepAgent();

  try {
    let inv: HostInventory = await quick.inspectHost(req.hostId, op.opId('inspect'));
    // Histories recorded before these rules replay without them (patched() is false there).
    const decision = preflight(inv, req, { guestConfig: patched('preflight-guest-config-invalid'), sriov: patched('preflight-sriov') });
    if (!decision.ok) throw ApplicationFailure.nonRetryable(decision.message, decision.code);
    const { plan } = decision;
    const companions = plan.devicesToHide.filter((b) => b !== req.bdf);
    op.record('preflight', `${req.bdf} → ${req.guest}: strategy ${plan.strategy}, attach ${plan.mode}${companions.length ? `, with IOMMU companions ${companions.join(' ')}` : ''}`);
    if (plan.alreadyDone) {
      op.record('attach', `${req.bdf} is already attached to ${req.guest}; nothing to do`);
      op.progress.step = 'done';
      return op.result('attach', req.guest, 'attached');
    }
    const guest = inv.guests.find((g) => g.name === req.guest);
    // A paused KVM guest takes a hotplug too (QEMU adds the device); for Xen guests this is `running` as before.
    const needsHotplug = plan.mode !== 'cold' && guest !== undefined && takesHotplug(guest);
    // Refuse before any effect when the attach could not happen before the deadline anyway.
    if (needsHotplug && op.nextSlot() > op.deadlineAt) await op.hotplugGate();

    for (const bdf of plan.devicesToHide) {
      const hidden = await quick.hideDevice(req.hostId, bdf, op.opId(`hide:${bdf}`));
      if (hidden.changed) op.pushUndo(`unhide ${bdf}`, () => undoAgent.unhideDevice(req.hostId, bdf, op.opId(`undo-hide:${bdf}`)));
      op.record('hide', `${bdf} added to pciback hide= in ${hidden.file}${hidden.changed ? '' : ' (already there)'}`);
    }

    let bootId = inv.bootId;
    if (plan.strategy === 'reboot') {
      // The host boots with the hide= lines and pciback takes the devices then: the rebind is registered
      // before the reboot, so a failure or cancel during the wait still gives them back (a no-op by state
      // for a device that is not on pciback). Histories from before registered it after the boot.
      // The device comes back to its driver only once the hide= is gone, so this undo unhides first
      // (the same op id as the hide's own undo, which then finds it done).
      const rebindFirst = patched('reboot-undo-before-effect');
      if (rebindFirst) {
        for (const bdf of plan.devicesToHide) {
          op.pushUndo(`rebind ${bdf} to its host driver`, async () => {
            await undoAgent.unhideDevice(req.hostId, bdf, op.opId(`undo-hide:${bdf}`));
            await undoAgent.unbindDevice(req.hostId, bdf, null, op.opId(`undo-bind:${bdf}`));
          });
        }
      }
      const { previousBootId } = await agent.rebootHost(req.hostId, op.opId('reboot'));
      op.progress.waitingFor = `host ${req.hostId} to come back from its reboot`;
      op.record('reboot', `rebooting ${req.hostId} so pciback claims the hidden devices at boot`);
      const remaining = op.deadlineAt - Date.now();
      try {
        bootId = await bootWaiter(remaining).awaitNewBoot(req.hostId, previousBootId);
      } catch (err) {
        // A cancel during the wait is a cancel (it compensates as one), not a missed deadline.
        if (isCancellation(err)) throw err;
        throw ApplicationFailure.create({ type: ErrorCode.DEADLINE_EXCEEDED, nonRetryable: true, message: `host ${req.hostId} did not come back from its reboot within the deadline`, cause: err as Error });
      }
      op.progress.waitingFor = null;
      if (!rebindFirst) for (const bdf of plan.devicesToHide) op.pushUndo(`rebind ${bdf} to its host driver`, () => undoAgent.unbindDevice(req.hostId, bdf, null, op.opId(`undo-bind:${bdf}`)));
    }

    // Bind and verify; a new boot id in between means the host rebooted under us: bind again.
    for (let round = 0; ; round++) {
      if (plan.strategy !== 'reboot' || round > 0) {
        for (const bdf of plan.devicesToHide) {
          const strategy = plan.strategy === 'reboot' ? 'dynamic' : plan.strategy;
          const bound = await agent.bindDevice(req.hostId, bdf, strategy, op.opId(`bind:${bdf}@${bootId}`));
          if (bound.changed && round === 0) {
            op.pushUndo(`rebind ${bdf} to ${bound.originalDriver ?? 'its host driver'}`, () => undoAgent.unbindDevice(req.hostId, bdf, bound.originalDriver, op.opId(`undo-bind:${bdf}`)));
          }
          op.record('bind', `${bdf} bound to pciback (${strategy})${bound.changed ? `, was on ${bound.originalDriver ?? 'no driver'}` : ' (already)'}`);
        }
      }
      inv = await quick.inspectHost(req.hostId, op.opId(`inspect-bound:${round}`));
      if (inv.bootId !== bootId) {
        if (round >= MAX_UNEXPECTED_REBOOTS) throw ApplicationFailure.nonRetryable(`host ${req.hostId} rebooted ${round + 1} times during the operation`, ErrorCode.HOST_UNRESPONSIVE);
        op.record('bind', `host ${req.hostId} rebooted unexpectedly (boot ${inv.bootId.slice(0, 8)}); re-checking the binding`);
        bootId = inv.bootId;
        continue;
      }
      for (const bdf of plan.devicesToHide) {
        const seen = await quick.verifyDevice(req.hostId, bdf, 'pciback', op.opId(`verify:${bdf}@${bootId}`));
        op.record('verify', `${bdf}: driver ${seen.driver ?? 'none'}, in pciback slots, assignable`);
      }
      break;
    }

    op.pushUndo(`detach ${req.bdf} from ${req.guest}`, async () => {
      if (needsHotplug) await op.hotplugGate(true);
      const detached = await undoAgent.detachDevice(req.hostId, req.bdf, req.guest, plan.mode, op.opId('undo-attach'));
      if (detached.hotplugged) op.noteHotplug();
    });
    if (needsHotplug) {
      await op.hotplugGate();
      // Counted before the attempt: a hotplug that fails half-way has still touched the kernel's interrupt tracking.
      op.noteHotplug();
    }
    const attached = await agent.attachDevice(req.hostId, req.bdf, req.guest, plan.mode, req.allowInsecurePV, op.opId(`attach@${bootId}`));
    op.record('attach', `${req.bdf} attached to ${req.guest}: live ${attached.hot}, in config ${attached.cold}${plan.attachNote ? ` (${plan.attachNote})` : ''}`);
    op.progress.step = 'done';
    return op.result('attach', req.guest, 'attached', { strategy: plan.strategy, mode: plan.mode, guestRebootNeeded: attached.guestRebootNeeded || plan.guestRebootNeeded });
  } catch (err) {
    return op.fail(err);
  }
}

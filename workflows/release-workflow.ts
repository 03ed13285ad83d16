import { ApplicationFailure } from '@temporalio/workflow';
import { ErrorCode } from '../schemas/errors.js';
import { ReleaseRequest, type ReleaseRequestInput, type PassthroughResult } from '../schemas/passthrough.js';
import { findDevice, findGuest, iommuCompanions } from '../policy/passthrough-policy.js';
import { agent, beginOperation, parseWorkflowInput, shortStepAgent } from './saga-kit.js';

/**
 * Gives a device back to the host: detach it from the guest (live and config), rebind the driver it had
 * before (recorded by the agent), take it and its IOMMU companions out of the hide= list, and verify the
 * host has them back. Every step is idempotent by state, so a release can be repeated after a failure;
 * it is forward-only (re-attaching on failure would cost another hotplug for nothing). Inspect, unhide
 * and verify are local activities (shortStepAgent, as in the passthrough saga); the detach and the
 * rebind, which take a host's real time, stay activities.
 */
export async function releaseWorkflow(input: ReleaseRequestInput, hotplugLedger: number[] = []): Promise<PassthroughResult> {
  const req = parseWorkflowInput(ReleaseRequest, input, 'release request');
  const op = beginOperation(req, hotplugLedger);
  const quick = shortStepAgent();
  try {
    const inv = await quick.inspectHost(req.hostId, op.opId('inspect'));
    const found = findDevice(inv, req.bdf);
    if (!found.ok) throw ApplicationFailure.nonRetryable(found.message, found.code);
    const guestFound = findGuest(inv, req.guest);
    if (!guestFound.ok) throw ApplicationFailure.nonRetryable(guestFound.message, guestFound.code);
    const { device } = found;
    const { guest } = guestFound;
    if (device.assignedTo !== null && device.assignedTo !== req.guest) {
      throw ApplicationFailure.nonRetryable(`${req.bdf} is assigned to ${device.assignedTo}, not ${req.guest}`, ErrorCode.DEVICE_ASSIGNED);
    }
    // Companions go back too, unless another guest holds one of them.
    const devices = [device, ...iommuCompanions(inv, device).filter((d) => d.assignedTo === null)];
    op.record('preflight', `release ${devices.map((d) => d.bdf).join(' ')} from ${req.guest}`);

    const live = guest.liveDevices.includes(req.bdf);
    if (live || guest.configDevices.includes(req.bdf)) {
      if (live) await op.hotplugGate();
      const detached = await agent.detachDevice(req.hostId, req.bdf, req.guest, 'both', op.opId('detach'));
      if (detached.hotplugged) op.noteHotplug();
      op.record('detach', `${req.bdf} detached from ${req.guest}${detached.hotplugged ? ' (hot unplug)' : ''}`);
    }
    for (const d of devices) {
      const unbound = await agent.unbindDevice(req.hostId, d.bdf, null, op.opId(`unbind:${d.bdf}`));
      op.record('unbind', `${d.bdf} ${unbound.changed ? 'given back to' : 'already on'} ${unbound.driver ?? 'no driver'}`);
    }
    for (const d of devices) {
      const unhidden = await quick.unhideDevice(req.hostId, d.bdf, op.opId(`unhide:${d.bdf}`));
      op.record('unhide', `${d.bdf} ${unhidden.changed ? 'removed from' : 'not in'} pciback hide= in ${unhidden.file}`);
    }
    for (const d of devices) {
      const seen = await quick.verifyDevice(req.hostId, d.bdf, 'host', op.opId(`verify:${d.bdf}`));
      op.record('verify', `${d.bdf}: back on ${seen.driver ?? 'no driver'}`);
    }
    op.progress.step = 'done';
    return op.result('detach', req.guest, 'released');
  } catch (err) {
    return op.fail(err);
  }
}

import type { HostBackend } from '../../agent/backend.js';
import type { HandlerContext } from '../../agent/command-handlers.js';
import { DeviceRecords } from '../../agent/device-records.js';

/** The context the agent gives a command handler, for unit tests of the handlers on one fixture host. */
export async function fixtureHandlerContext(backend: HostBackend, stateDir: string, extra: Partial<HandlerContext> = {}): Promise<HandlerContext> {
  return {
    hostId: 'dom0',
    backend,
    records: await DeviceRecords.open(stateDir),
    hotplugCap: { max: 3, windowMs: 60_000 },
    now: Date.now,
    emit: async () => {},
    checkpoint: () => {},
    ...extra,
  };
}

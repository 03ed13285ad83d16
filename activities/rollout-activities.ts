import { type Client, WorkflowNotFoundError } from '@temporalio/client';
import type { NatsConnection } from '@nats-io/transport-node';
import { HostRolloutReport, type HostWork, HostsRef } from '../schemas/rollout.js';
import { dropRolloutHosts, loadRolloutHosts } from '../transport/rollout-hosts.js';
import { hostRolloutWorkflowId } from '../workflows/definitions.js';

/** A host a rollout has launched and not yet heard back from. */
export interface HostInFlight {
  hostId: string;
  canary: boolean;
}

/**
 * What a rollout needs besides its hosts' operations: its hosts, page by page, from KV `ptc_plans`;
 * their removal when it is done; and, for hosts launched by an earlier generation, whether their
 * workflow closed without reporting (terminated or timed out: nothing else fails to report).
 */
export function createRolloutActivities(deps: { nc: NatsConnection; client: Client }) {
  return {
    async loadRolloutHosts(ref: HostsRef, page: number): Promise<HostWork[]> {
      return loadRolloutHosts(deps.nc, HostsRef.parse(ref), page);
    },

    async dropRolloutHosts(ref: HostsRef): Promise<void> {
      await dropRolloutHosts(deps.nc, HostsRef.parse(ref));
    },

    async closedHostRollouts(rollout: string, hosts: HostInFlight[]): Promise<HostRolloutReport[]> {
      const closed: HostRolloutReport[] = [];
      for (const host of hosts) {
        const handle = deps.client.workflow.getHandle(hostRolloutWorkflowId(rollout, host.hostId));
        let status;
        try {
          ({ status } = await handle.describe());
        } catch (err) {
          if (!(err instanceof WorkflowNotFoundError)) throw err;
          closed.push({ hostId: host.hostId, state: 'failed', canary: host.canary, details: ['host workflow not found (deleted, or its retention passed) without reporting to its rollout'] });
          continue;
        }
        if (status.name === 'RUNNING') continue;
        if (status.name === 'COMPLETED') {
          const report = HostRolloutReport.safeParse(await handle.result());
          if (report.success) {
            closed.push(report.data);
            continue;
          }
        }
        closed.push({ hostId: host.hostId, state: 'failed', canary: host.canary, details: [`host workflow ${status.name.toLowerCase().replaceAll('_', ' ')} without reporting to its rollout`] });
      }
      return closed;
    },
  };
}

export type RolloutActivities = ReturnType<typeof createRolloutActivities>;

import { hostname } from 'node:os';
import { ErrorCode, PtcError } from '../../schemas/errors.js';
import { DEFAULT_DEPLOYMENT_NAME, type DeploymentView, describeDeployment, setCurrentVersion } from '../../transport/worker-deployment.js';
import { openTemporal } from '../clients.js';
import { type ConnectionFlags, resolveConnection } from '../connection.js';
import { printJson } from '../output.js';

export interface DeploymentOptions extends ConnectionFlags {
  deploymentName?: string | undefined;
  json: boolean;
}

const deploymentNameOf = (opts: DeploymentOptions): string => opts.deploymentName ?? process.env.PTC_DEPLOYMENT_NAME ?? DEFAULT_DEPLOYMENT_NAME;

function describeView(view: DeploymentView): string {
  const out = [`deployment ${view.name}: current ${view.current ?? '(none: unversioned workers)'}${view.ramping ? `, ramping ${view.ramping}` : ''}`];
  for (const v of view.versions) {
    const state = v.status === 'drained' || (v.status === 'draining' && v.drainage === 'drained') ? 'drained: its workers can be stopped' : v.status === 'draining' ? 'draining: workflows pinned to it still run, keep its workers' : (v.status ?? 'unknown');
    out.push(`  ${v.buildId.padEnd(20)} ${state}`);
  }
  return out.join('\n');
}

/** `ptctl deployment status`: the builds of the deployment, which one is current, which still drain. */
export async function deploymentStatusCommand(opts: DeploymentOptions): Promise<void> {
  const conn = await resolveConnection(opts);
  const { client, close } = await openTemporal(conn);
  try {
    const name = deploymentNameOf(opts);
    const view = await describeDeployment(client, conn.temporalNamespace, name);
    if (!view) throw new PtcError(ErrorCode.INVALID_INPUT, `no worker deployment ${name}: no versioned \`ptctl worker\` has polled yet (or it runs --unversioned)`);
    if (opts.json) printJson(view);
    else process.stdout.write(describeView(view) + '\n');
  } finally {
    await close();
  }
}

/** `ptctl deployment set-current <build-id>`: new work and auto-upgrading workflows move to that build. */
export async function deploymentSetCurrentCommand(opts: DeploymentOptions & { buildId: string }): Promise<void> {
  const conn = await resolveConnection(opts);
  const { client, close } = await openTemporal(conn);
  try {
    const name = deploymentNameOf(opts);
    const { previous } = await setCurrentVersion(client, conn.temporalNamespace, name, opts.buildId, `ptctl@${hostname()}`);
    if (opts.json) printJson({ deployment: name, current: opts.buildId, previous });
    else process.stdout.write(`deployment ${name}: current ${opts.buildId}${previous && previous !== opts.buildId ? `; ${previous} drains (its pinned workflows finish on it): stop its workers once \`ptctl deployment status\` shows it drained` : ''}\n`);
  } finally {
    await close();
  }
}

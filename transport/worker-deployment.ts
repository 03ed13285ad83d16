import { type Connection, isGrpcServiceError } from '@temporalio/client';
import proto from '@temporalio/proto';
import { ErrorCode, PtcError } from '../schemas/errors.js';
import { GrpcStatus } from './grpc-status.js';
import { type Timestamp, enumLabel, timestampDate } from './proto-values.js';

/** The Worker Deployment every `ptctl worker` joins unless told otherwise (`--deployment`, PTC_DEPLOYMENT_NAME). */
export const DEFAULT_DEPLOYMENT_NAME = 'ptctl';

const enums = proto.temporal.api.enums.v1;
const iso = (ts: Timestamp): string | null => timestampDate(ts)?.toISOString() ?? null;

export interface DeploymentVersionView {
  buildId: string;
  /** inactive | current | ramping | draining | drained (the server's view of the version). */
  status: string | null;
  /** While draining: draining (pinned workflows still open) or drained (safe to stop its workers). */
  drainage: string | null;
  drainageCheckedAt: string | null;
  createdAt: string | null;
}

export interface DeploymentView {
  name: string;
  current: string | null;
  ramping: string | null;
  versions: DeploymentVersionView[];
}

/** A deployment, its current version and every version with its drainage; null when no worker of it ever polled. */
export async function describeDeployment(connection: Pick<Connection, 'workflowService'>, namespace: string, deploymentName: string): Promise<DeploymentView | null> {
  let res;
  try {
    res = await connection.workflowService.describeWorkerDeployment({ namespace, deploymentName });
  } catch (err) {
    if (isGrpcServiceError(err) && (err.code as number) === GrpcStatus.NOT_FOUND) return null;
    throw err;
  }
  const info = res.workerDeploymentInfo;
  const routing = info?.routingConfig;
  return {
    name: info?.name ?? deploymentName,
    current: routing?.currentDeploymentVersion?.buildId || null,
    ramping: routing?.rampingDeploymentVersion?.buildId || null,
    versions: (info?.versionSummaries ?? []).map((v) => ({
      buildId: v.deploymentVersion?.buildId ?? '',
      status: enumLabel(enums.WorkerDeploymentVersionStatus, v.status, 'WORKER_DEPLOYMENT_VERSION_STATUS_'),
      drainage: enumLabel(enums.VersionDrainageStatus, v.drainageInfo?.status ?? v.drainageStatus, 'VERSION_DRAINAGE_STATUS_'),
      drainageCheckedAt: iso(v.drainageInfo?.lastCheckedTime as Timestamp),
      createdAt: iso(v.createTime as Timestamp),
    })),
  };
}

/**
 * Makes a version current: new workflows and every AUTO_UPGRADE workflow go to it from their next task;
 * PINNED workflows stay on the version they started on. The version must have polled the task queue.
 */
export async function setCurrentVersion(connection: Pick<Connection, 'workflowService'>, namespace: string, deploymentName: string, buildId: string, identity: string): Promise<{ previous: string | null }> {
  try {
    const res = await connection.workflowService.setWorkerDeploymentCurrentVersion({ namespace, deploymentName, buildId, identity });
    // Older servers fill only the string form, `<deployment>.<build id>`.
    const previousString = res.previousVersion?.startsWith(`${deploymentName}.`) ? res.previousVersion.slice(deploymentName.length + 1) : null;
    return { previous: res.previousDeploymentVersion?.buildId || previousString || null };
  } catch (err) {
    if (isGrpcServiceError(err) && ((err.code as number) === GrpcStatus.NOT_FOUND || (err.code as number) === GrpcStatus.FAILED_PRECONDITION)) {
      throw new PtcError(ErrorCode.INVALID_INPUT, `deployment ${deploymentName} has no version ${buildId} that the server can route to (${err.details}); start \`ptctl worker\` of that build first and check \`ptctl deployment status\``, { cause: err });
    }
    throw err;
  }
}

import { enumLabel } from './proto-values.js';
import { SUBSET_ENUMS } from './workflow-service-subset.js';

/** Which build a workflow runs on and how it moves (describe()'s raw execution info). */
export interface WorkflowVersionView {
  behavior: string | null;
  deploymentName: string | null;
  buildId: string | null;
}

type RawVersion = { deploymentName?: string | null; buildId?: string | null } | null | undefined;
type RawVersioningInfo = {
  behavior?: number | null;
  deploymentVersion?: RawVersion;
  versioningOverride?: { pinned?: { version?: RawVersion } | null } | null;
} | null | undefined;

/**
 * The version a workflow is on, from a DescribeWorkflowExecution reply (the SDK's describe().raw or
 * the CLI's own reader); all null for a workflow that only unversioned workers ran.
 */
export function workflowVersion(raw: { workflowExecutionInfo?: { versioningInfo?: RawVersioningInfo } | null }): WorkflowVersionView {
  const info = raw.workflowExecutionInfo?.versioningInfo;
  const version = info?.versioningOverride?.pinned?.version ?? info?.deploymentVersion;
  return {
    behavior: enumLabel(SUBSET_ENUMS.VersioningBehavior.values, info?.behavior, 'VERSIONING_BEHAVIOR_'),
    deploymentName: version?.deploymentName || null,
    buildId: version?.buildId || null,
  };
}

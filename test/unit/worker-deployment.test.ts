import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import proto from '@temporalio/proto';
import { workflowVersion } from '../../transport/workflow-version.js';

const { VersioningBehavior } = proto.temporal.api.enums.v1;

void describe('workflowVersion (the build a workflow is on, from describe().raw)', () => {
  void it('reads the deployment version and the behavior', () => {
    const raw = { workflowExecutionInfo: { versioningInfo: { behavior: VersioningBehavior.VERSIONING_BEHAVIOR_PINNED, deploymentVersion: { deploymentName: 'ptctl', buildId: 'wf-a' } } } };
    assert.deepEqual(workflowVersion(raw), { behavior: 'pinned', deploymentName: 'ptctl', buildId: 'wf-a' });
  });

  void it('names auto-upgrade in the CLI\'s spelling', () => {
    const raw = { workflowExecutionInfo: { versioningInfo: { behavior: VersioningBehavior.VERSIONING_BEHAVIOR_AUTO_UPGRADE, deploymentVersion: { deploymentName: 'ptctl', buildId: 'wf-b' } } } };
    assert.equal(workflowVersion(raw).behavior, 'auto-upgrade');
  });

  void it('prefers an operator\'s pinned override (it is where the workflow really runs)', () => {
    const raw = {
      workflowExecutionInfo: {
        versioningInfo: {
          behavior: VersioningBehavior.VERSIONING_BEHAVIOR_AUTO_UPGRADE,
          deploymentVersion: { deploymentName: 'ptctl', buildId: 'wf-b' },
          versioningOverride: { pinned: { version: { deploymentName: 'ptctl', buildId: 'wf-a' } } },
        },
      },
    };
    assert.equal(workflowVersion(raw).buildId, 'wf-a');
  });

  void it('is all null for a workflow only unversioned workers ran', () => {
    assert.deepEqual(workflowVersion({ workflowExecutionInfo: {} }), { behavior: null, deploymentName: null, buildId: null });
    assert.deepEqual(workflowVersion({ workflowExecutionInfo: { versioningInfo: { behavior: VersioningBehavior.VERSIONING_BEHAVIOR_UNSPECIFIED } } }), { behavior: null, deploymentName: null, buildId: null });
  });
});

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import protobuf from 'protobufjs/light.js';
import proto from '@temporalio/proto';
import { ActivityFailure, ApplicationFailure, DefaultFailureConverter, RetryState, defaultPayloadConverter } from '@temporalio/common';
import { WORKFLOW_SERVICE_SUBSET } from '../../transport/workflow-service-subset.js';
import { workflowVersion } from '../../transport/workflow-version.js';
import { failureDetailsOf, failureInfo } from '../../cli/failure-info.js';
import { ErrorCode } from '../../schemas/errors.js';
import { decodeTypedSearchAttributes } from '@temporalio/common/lib/converter/payload-search-attributes.js';
import { PtcFailedHosts, PtcHostId } from '../../workflows/visibility.js';

// The whole API as the SDK loads it: the reference the CLI's subset must agree with.
const full = (proto as unknown as { temporal: { api: protobuf.Namespace } }).temporal.api.root;
const subset = protobuf.Root.fromJSON(WORKFLOW_SERVICE_SUBSET);
subset.resolveAll();

function* typesOf(ns: protobuf.NamespaceBase): Generator<protobuf.Type | protobuf.Enum> {
  for (const nested of ns.nestedArray) {
    if (nested instanceof protobuf.Type || nested instanceof protobuf.Enum) yield nested;
    if (nested instanceof protobuf.Namespace || nested instanceof protobuf.Type) yield* typesOf(nested);
  }
}

const fieldShape = (f: protobuf.Field): string => `${f.id} ${f.resolvedType ? f.resolvedType.fullName : f.type}${f.repeated ? ' repeated' : ''}${f instanceof protobuf.MapField ? ` map<${f.keyType}>` : ''}`;

void describe('the CLI\'s WorkflowService subset (transport/workflow-service-subset.ts)', () => {
  void it('names every message, field number and type as @temporalio/proto does', () => {
    let fields = 0;
    for (const type of typesOf(subset)) {
      const reference = full.lookup(type.fullName);
      assert.ok(reference, `${type.fullName} is not in the API`);
      if (type instanceof protobuf.Enum) {
        assert.ok(reference instanceof protobuf.Enum, `${type.fullName} is an enum in the API`);
        for (const [name, value] of Object.entries(type.values)) assert.equal(reference.values[name], value, `${type.fullName}.${name}`);
        continue;
      }
      assert.ok(reference instanceof protobuf.Type, `${type.fullName} is a message in the API`);
      (reference).resolveAll();
      for (const field of type.fieldsArray) {
        const want: protobuf.Field | undefined = (reference).fields[field.name];
        assert.ok(want, `${type.fullName}.${field.name} is not a field of the API's message`);
        assert.equal(fieldShape(field), fieldShape(want), `${type.fullName}.${field.name}`);
        fields++;
      }
    }
    assert.ok(fields > 60, `checked ${fields} fields`);
  });

  void it('reads a full DescribeWorkflowExecution reply as the SDK wrote it: status, run, version; the fields it does not name are skipped', () => {
    const { DescribeWorkflowExecutionResponse } = proto.temporal.api.workflowservice.v1;
    const { WorkflowExecutionStatus, VersioningBehavior } = proto.temporal.api.enums.v1;
    const bytes = DescribeWorkflowExecutionResponse.encode(
      DescribeWorkflowExecutionResponse.fromObject({
      executionConfig: { taskQueue: { name: 'ptctl' } },
      workflowExecutionInfo: {
        execution: { workflowId: 'op/sim-1/0000:09:00.0/r1', runId: 'run-1' },
        type: { name: 'passthroughWorkflow' },
        status: WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_CANCELED,
        historyLength: 54,
        taskQueue: 'ptctl',
        versioningInfo: { behavior: VersioningBehavior.VERSIONING_BEHAVIOR_PINNED, deploymentVersion: { deploymentName: 'ptctl', buildId: 'wf-b' }, versioningOverride: { pinned: { version: { deploymentName: 'ptctl', buildId: 'wf-a' } } } },
      },
      pendingActivities: [{ activityId: '3', activityType: { name: 'bind' } }],
      }),
    ).finish();
    const reply = subset.lookupType('temporal.api.workflowservice.v1.DescribeWorkflowExecutionResponse').decode(bytes) as unknown as Parameters<typeof workflowVersion>[0] & {
      workflowExecutionInfo: { execution: { runId: string }; status: number };
    };
    assert.equal(reply.workflowExecutionInfo.execution.runId, 'run-1');
    assert.equal(reply.workflowExecutionInfo.status, WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_CANCELED);
    assert.deepEqual(workflowVersion(reply), { behavior: 'pinned', deploymentName: 'ptctl', buildId: 'wf-a' }, 'the pinned override wins');
  });

  void it('reads a visibility list: times (int64 seconds), status and search attributes as the SDK decodes them', () => {
    const { ListWorkflowExecutionsResponse } = proto.temporal.api.workflowservice.v1;
    const indexedFields = { PtcHostId: defaultPayloadConverter.toPayload('sim-1'), PtcFailedHosts: defaultPayloadConverter.toPayload(3) };
    for (const field of Object.values(indexedFields)) field.metadata = { ...field.metadata, type: new TextEncoder().encode(field === indexedFields.PtcHostId ? 'Keyword' : 'Int') };
    const bytes = ListWorkflowExecutionsResponse.encode(
      ListWorkflowExecutionsResponse.fromObject({
        executions: [{ execution: { workflowId: 'rollout/r', runId: 'x' }, type: { name: 'rolloutWorkflow' }, startTime: { seconds: 1_796_000_000, nanos: 250_000_000 }, status: 2, searchAttributes: { indexedFields } }],
        nextPageToken: [9],
      }),
    ).finish();
    const reply = subset.lookupType('temporal.api.workflowservice.v1.ListWorkflowExecutionsResponse').decode(bytes) as unknown as {
      executions: Array<{ startTime: { seconds: { toNumber(): number } | number; nanos: number }; closeTime: unknown; type: { name: string }; searchAttributes: { indexedFields: Parameters<typeof decodeTypedSearchAttributes>[0] } }>;
    };
    const [wf] = reply.executions;
    assert.ok(wf);
    const seconds = typeof wf.startTime.seconds === 'number' ? wf.startTime.seconds : wf.startTime.seconds.toNumber();
    assert.deepEqual([seconds, wf.startTime.nanos, wf.type.name, wf.closeTime], [1_796_000_000, 250_000_000, 'rolloutWorkflow', null]);
    const sa = decodeTypedSearchAttributes(wf.searchAttributes.indexedFields);
    assert.deepEqual([sa.get(PtcHostId), sa.get(PtcFailedHosts)], ['sim-1', 3]);
  });

  void it('writes requests the API reads back field for field', () => {
    const request = { namespace: 'default', execution: { workflowId: 'rollout/r', runId: 'run-2' }, skipArchival: true, historyEventFilterType: 2, nextPageToken: Buffer.from([1, 2, 3]) };
    const type = subset.lookupType('temporal.api.workflowservice.v1.GetWorkflowExecutionHistoryRequest');
    const decoded = proto.temporal.api.workflowservice.v1.GetWorkflowExecutionHistoryRequest.decode(type.encode(type.fromObject(request)).finish());
    assert.deepEqual(proto.temporal.api.workflowservice.v1.GetWorkflowExecutionHistoryRequest.toObject(decoded, { bytes: Array }), { ...request, nextPageToken: [1, 2, 3] });
    const query = subset.lookupType('temporal.api.workflowservice.v1.QueryWorkflowRequest');
    const q = proto.temporal.api.workflowservice.v1.QueryWorkflowRequest.decode(query.encode(query.fromObject({ namespace: 'default', execution: { workflowId: 'w', runId: 'r' }, query: { queryType: 'rollout-progress', queryArgs: { payloads: [] } } })).finish());
    assert.equal(q.query?.queryType, 'rollout-progress');
    assert.equal(q.execution?.runId, 'r');
  });

  void it('reads a failed run\'s close event into the same code, sentence and details as the SDK client', () => {
    const converter = new DefaultFailureConverter();
    const inner = ApplicationFailure.create({ type: ErrorCode.GUEST_NOT_FOUND, message: 'no guest vm-nope on host sim-2', nonRetryable: true, details: [{ outcome: 'compensated', residue: ['none'] }] });
    const wrapped = new ActivityFailure('activity failed', 'attach', '7', RetryState.NON_RETRYABLE_FAILURE, 'worker@host', inner);
    const failure = converter.errorToFailure(wrapped, defaultPayloadConverter);
    const { HistoryEvent } = proto.temporal.api.history.v1;
    const bytes = HistoryEvent.encode(HistoryEvent.fromObject({ eventId: 40, eventType: 10, workflowExecutionFailedEventAttributes: { failure, retryState: 2, workflowTaskCompletedEventId: 39 } })).finish();
    const event = subset.lookupType('temporal.api.history.v1.HistoryEvent').decode(bytes) as unknown as { workflowExecutionFailedEventAttributes: { failure: Parameters<DefaultFailureConverter['failureToError']>[0] } };
    const ours = converter.failureToError(event.workflowExecutionFailedEventAttributes.failure, defaultPayloadConverter);
    const sdks = converter.failureToError(HistoryEvent.decode(bytes).workflowExecutionFailedEventAttributes!.failure!, defaultPayloadConverter);
    assert.deepEqual(failureInfo(ours), { code: ErrorCode.GUEST_NOT_FOUND, message: 'no guest vm-nope on host sim-2' });
    assert.deepEqual(failureInfo(ours), failureInfo(sdks));
    assert.deepEqual(failureDetailsOf((ours as ActivityFailure).cause), { outcome: 'compensated', residue: ['none'] });
  });
});

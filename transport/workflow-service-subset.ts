/**
 * The few messages of Temporal's WorkflowService that the CLI's one-shot reads use (describe, query, a
 * run's close event, a visibility list), as a protobufjs JSON descriptor with the API's own package, names and field
 * numbers. `@temporalio/proto` describes the whole API and costs a CLI command about 150 ms to load
 * (compiling its JSON module and building protobufjs reflection for every message); this subset costs
 * a few. Protobuf skips fields a reader does not know, so a message here lists only the fields ptctl
 * reads or sends. test/unit/workflow-service-subset.test.ts checks every name, number and type here
 * against `@temporalio/proto`, so an API change cannot slip in unnoticed.
 *
 * Enum fields decode to their numbers, as they do through the SDK; each enum lists the values ptctl
 * names, and the values of one it only passes through are left out.
 */
import type { INamespace } from 'protobufjs/light.js';

const fields = (spec: Record<string, [id: number, type: string, rule?: 'repeated']>): { fields: Record<string, { id: number; type: string; rule?: string }> } => ({
  fields: Object.fromEntries(Object.entries(spec).map(([name, [id, type, rule]]) => [name, { id, type, ...(rule ? { rule } : {}) }])),
});

const common = {
  WorkflowExecution: fields({ workflowId: [1, 'string'], runId: [2, 'string'] }),
  WorkflowType: fields({ name: [1, 'string'] }),
  ActivityType: fields({ name: [1, 'string'] }),
  // metadata is map<string, bytes>: protobufjs spells a map field with keyType.
  Payload: { fields: { metadata: { id: 1, keyType: 'string', type: 'bytes' }, data: { id: 2, type: 'bytes' } } },
  Payloads: fields({ payloads: [1, 'Payload', 'repeated'] }),
  SearchAttributes: { fields: { indexedFields: { id: 1, keyType: 'string', type: 'Payload' } } },
};

export const SUBSET_ENUMS = {
  WorkflowExecutionStatus: {
    values: {
      WORKFLOW_EXECUTION_STATUS_UNSPECIFIED: 0,
      WORKFLOW_EXECUTION_STATUS_RUNNING: 1,
      WORKFLOW_EXECUTION_STATUS_COMPLETED: 2,
      WORKFLOW_EXECUTION_STATUS_FAILED: 3,
      WORKFLOW_EXECUTION_STATUS_CANCELED: 4,
      WORKFLOW_EXECUTION_STATUS_TERMINATED: 5,
      WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW: 6,
      WORKFLOW_EXECUTION_STATUS_TIMED_OUT: 7,
      WORKFLOW_EXECUTION_STATUS_PAUSED: 8,
    },
  },
  VersioningBehavior: { values: { VERSIONING_BEHAVIOR_UNSPECIFIED: 0, VERSIONING_BEHAVIOR_PINNED: 1, VERSIONING_BEHAVIOR_AUTO_UPGRADE: 2 } },
  HistoryEventFilterType: { values: { HISTORY_EVENT_FILTER_TYPE_UNSPECIFIED: 0, HISTORY_EVENT_FILTER_TYPE_ALL_EVENT: 1, HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT: 2 } },
  RetryState: { values: { RETRY_STATE_UNSPECIFIED: 0 } },
  TimeoutType: { values: { TIMEOUT_TYPE_UNSPECIFIED: 0 } },
  ApplicationErrorCategory: { values: { APPLICATION_ERROR_CATEGORY_UNSPECIFIED: 0 } },
};

const deployment = {
  WorkerDeploymentVersion: fields({ buildId: [1, 'string'], deploymentName: [2, 'string'] }),
};

const workflow = {
  WorkflowExecutionInfo: fields({
    execution: [1, 'temporal.api.common.v1.WorkflowExecution'],
    type: [2, 'temporal.api.common.v1.WorkflowType'],
    startTime: [3, 'google.protobuf.Timestamp'],
    closeTime: [4, 'google.protobuf.Timestamp'],
    status: [5, 'temporal.api.enums.v1.WorkflowExecutionStatus'],
    searchAttributes: [11, 'temporal.api.common.v1.SearchAttributes'],
    versioningInfo: [22, 'WorkflowExecutionVersioningInfo'],
  }),
  WorkflowExecutionVersioningInfo: fields({
    behavior: [1, 'temporal.api.enums.v1.VersioningBehavior'],
    versioningOverride: [3, 'VersioningOverride'],
    deploymentVersion: [7, 'temporal.api.deployment.v1.WorkerDeploymentVersion'],
  }),
  VersioningOverride: { ...fields({ pinned: [3, 'PinnedOverride'] }), nested: { PinnedOverride: fields({ version: [2, 'temporal.api.deployment.v1.WorkerDeploymentVersion'] }) } },
};

// What the SDK's failure converter reads to rebuild an error (messages, types, details, causes).
const failure = {
  Failure: fields({
    message: [1, 'string'],
    source: [2, 'string'],
    stackTrace: [3, 'string'],
    cause: [4, 'Failure'],
    applicationFailureInfo: [5, 'ApplicationFailureInfo'],
    timeoutFailureInfo: [6, 'TimeoutFailureInfo'],
    canceledFailureInfo: [7, 'CanceledFailureInfo'],
    terminatedFailureInfo: [8, 'TerminatedFailureInfo'],
    serverFailureInfo: [9, 'ServerFailureInfo'],
    resetWorkflowFailureInfo: [10, 'ResetWorkflowFailureInfo'],
    activityFailureInfo: [11, 'ActivityFailureInfo'],
    childWorkflowExecutionFailureInfo: [12, 'ChildWorkflowExecutionFailureInfo'],
    encodedAttributes: [20, 'temporal.api.common.v1.Payload'],
  }),
  ApplicationFailureInfo: fields({ type: [1, 'string'], nonRetryable: [2, 'bool'], details: [3, 'temporal.api.common.v1.Payloads'], category: [5, 'temporal.api.enums.v1.ApplicationErrorCategory'] }),
  TimeoutFailureInfo: fields({ timeoutType: [1, 'temporal.api.enums.v1.TimeoutType'], lastHeartbeatDetails: [2, 'temporal.api.common.v1.Payloads'] }),
  CanceledFailureInfo: fields({ details: [1, 'temporal.api.common.v1.Payloads'] }),
  // Its presence is what says the failure is a termination.
  TerminatedFailureInfo: fields({}),
  ServerFailureInfo: fields({ nonRetryable: [1, 'bool'] }),
  ResetWorkflowFailureInfo: fields({ lastHeartbeatDetails: [1, 'temporal.api.common.v1.Payloads'] }),
  ActivityFailureInfo: fields({ identity: [3, 'string'], activityType: [4, 'temporal.api.common.v1.ActivityType'], activityId: [5, 'string'], retryState: [6, 'temporal.api.enums.v1.RetryState'] }),
  ChildWorkflowExecutionFailureInfo: fields({
    namespace: [1, 'string'],
    workflowExecution: [2, 'temporal.api.common.v1.WorkflowExecution'],
    workflowType: [3, 'temporal.api.common.v1.WorkflowType'],
    retryState: [6, 'temporal.api.enums.v1.RetryState'],
  }),
};

const query = {
  WorkflowQuery: fields({ queryType: [1, 'string'], queryArgs: [2, 'temporal.api.common.v1.Payloads'] }),
};

const history = {
  History: fields({ events: [1, 'HistoryEvent', 'repeated'] }),
  // A close event carries one of these; which one says how the run ended.
  HistoryEvent: fields({
    workflowExecutionCompletedEventAttributes: [7, 'WorkflowExecutionCompletedEventAttributes'],
    workflowExecutionFailedEventAttributes: [8, 'WorkflowExecutionFailedEventAttributes'],
    workflowExecutionTimedOutEventAttributes: [9, 'WorkflowExecutionTimedOutEventAttributes'],
    workflowExecutionTerminatedEventAttributes: [27, 'WorkflowExecutionTerminatedEventAttributes'],
    workflowExecutionCanceledEventAttributes: [29, 'WorkflowExecutionCanceledEventAttributes'],
    workflowExecutionContinuedAsNewEventAttributes: [33, 'WorkflowExecutionContinuedAsNewEventAttributes'],
  }),
  WorkflowExecutionCompletedEventAttributes: fields({ result: [1, 'temporal.api.common.v1.Payloads'], newExecutionRunId: [3, 'string'] }),
  WorkflowExecutionFailedEventAttributes: fields({ failure: [1, 'temporal.api.failure.v1.Failure'], newExecutionRunId: [4, 'string'] }),
  WorkflowExecutionTimedOutEventAttributes: fields({ newExecutionRunId: [2, 'string'] }),
  WorkflowExecutionTerminatedEventAttributes: fields({ reason: [1, 'string'] }),
  WorkflowExecutionCanceledEventAttributes: fields({ details: [2, 'temporal.api.common.v1.Payloads'] }),
  WorkflowExecutionContinuedAsNewEventAttributes: fields({ newExecutionRunId: [1, 'string'] }),
};

const workflowservice = {
  DescribeWorkflowExecutionRequest: fields({ namespace: [1, 'string'], execution: [2, 'temporal.api.common.v1.WorkflowExecution'] }),
  DescribeWorkflowExecutionResponse: fields({ workflowExecutionInfo: [2, 'temporal.api.workflow.v1.WorkflowExecutionInfo'] }),
  QueryWorkflowRequest: fields({ namespace: [1, 'string'], execution: [2, 'temporal.api.common.v1.WorkflowExecution'], query: [3, 'temporal.api.query.v1.WorkflowQuery'] }),
  // No reject condition is sent, so the server never fills queryRejected.
  QueryWorkflowResponse: fields({ queryResult: [1, 'temporal.api.common.v1.Payloads'] }),
  GetWorkflowExecutionHistoryRequest: fields({
    namespace: [1, 'string'],
    execution: [2, 'temporal.api.common.v1.WorkflowExecution'],
    nextPageToken: [4, 'bytes'],
    historyEventFilterType: [6, 'temporal.api.enums.v1.HistoryEventFilterType'],
    skipArchival: [7, 'bool'],
  }),
  GetWorkflowExecutionHistoryResponse: fields({ history: [1, 'temporal.api.history.v1.History'], nextPageToken: [3, 'bytes'] }),
  ListWorkflowExecutionsRequest: fields({ namespace: [1, 'string'], pageSize: [2, 'int32'], nextPageToken: [3, 'bytes'], query: [4, 'string'] }),
  ListWorkflowExecutionsResponse: fields({ executions: [1, 'temporal.api.workflow.v1.WorkflowExecutionInfo', 'repeated'], nextPageToken: [2, 'bytes'] }),
};

const v1 = (nested: Record<string, object>): INamespace => ({ nested: { v1: { nested } } });

export const WORKFLOW_SERVICE_SUBSET: INamespace = {
  nested: {
    google: { nested: { protobuf: { nested: { Timestamp: fields({ seconds: [1, 'int64'], nanos: [2, 'int32'] }) } } } },
    temporal: {
      nested: {
        api: {
          nested: {
            common: v1(common),
            enums: v1(SUBSET_ENUMS),
            deployment: v1(deployment),
            workflow: v1(workflow),
            failure: v1(failure),
            query: v1(query),
            history: v1(history),
            workflowservice: v1(workflowservice),
          },
        },
      },
    },
  },
};

/** The service whose methods the subset's requests go to: `/<service>/<Method>`. */
export const WORKFLOW_SERVICE = 'temporal.api.workflowservice.v1.WorkflowService';

import { Client as GrpcClient, type ChannelCredentials, Metadata, type ServiceError, credentials, status as GrpcCode } from '@grpc/grpc-js';
import { CancelledFailure, DefaultFailureConverter, type QueryDefinition, TerminatedFailure, TimeoutFailure, type TypedSearchAttributes, arrayFromPayloads, defaultPayloadConverter, fromPayloadsAtIndex } from '@temporalio/common';
import { decodeTypedSearchAttributes } from '@temporalio/common/lib/converter/payload-search-attributes.js';
import protobuf from 'protobufjs/light.js';
import { ErrorCode, PtcError } from '../schemas/errors.js';
import { type Timestamp, enumKey, timestampDate } from '../transport/proto-values.js';
import { SUBSET_ENUMS, WORKFLOW_SERVICE, WORKFLOW_SERVICE_SUBSET } from '../transport/workflow-service-subset.js';
import { type WorkflowVersionView, workflowVersion } from '../transport/workflow-version.js';
import { temporalConnectOptions } from './temporal-connection.js';
import type { Connection } from './connection.js';
import { WorkflowEndedError } from './failure-info.js';

/** The SDK client's names for a run's status (`CANCELLED`, not the API's `CANCELED`), so `--json` reads the same. */
export type WorkflowStatusName = 'UNSPECIFIED' | 'RUNNING' | 'COMPLETED' | 'FAILED' | 'CANCELLED' | 'TERMINATED' | 'CONTINUED_AS_NEW' | 'TIMED_OUT' | 'PAUSED' | 'UNKNOWN';

export interface WorkflowDescription {
  workflowId: string;
  /** The latest run: what query and result read, so a run that starts in between is not mixed in. */
  runId: string;
  status: WorkflowStatusName;
  version: WorkflowVersionView;
}

/**
 * Read-only access to workflows for the CLI's one-shot commands (`ptctl status`, `ptctl list`):
 * describe, query, a closed run's result and a visibility list, over Temporal's gRPC API with grpc-js
 * and the few messages of transport/workflow-service-subset.ts. The SDK client builds protobufjs
 * reflection for the whole API when it loads (about 150 ms of a command that took 400); everything
 * else about the call is the same: address, TLS and mTLS, API key, namespace header, and payloads,
 * failures and search attributes decoded by the SDK's own converters.
 */
export interface WorkflowReader {
  /** The workflow's latest run; null when there is no workflow with this id. */
  describe(workflowId: string): Promise<WorkflowDescription | null>;
  query<T>(run: Pick<WorkflowDescription, 'workflowId' | 'runId'>, query: QueryDefinition<T>): Promise<T>;
  /**
   * A closed run's result, following continue-as-new, cron and retry to the run that ended the chain,
   * as the SDK's handle.result() does; a run that ended without one throws WorkflowEndedError.
   */
  result<T>(run: Pick<WorkflowDescription, 'workflowId' | 'runId'>): Promise<T>;
  /** Workflows a visibility query matches, as Temporal orders them (newest first), at most `limit`. */
  list(query: string, limit: number): Promise<ListedExecution[]>;
  close(): void;
}

export interface ListedExecution {
  workflowId: string;
  type: string;
  status: WorkflowStatusName;
  startTime: Date;
  closeTime: Date | null;
  searchAttributes: TypedSearchAttributes;
}

/** Describe, a close event, a list page: answered from the server's own records. A query waits on a worker. */
const READ_DEADLINE_MS = 10_000;
const QUERY_DEADLINE_MS = 30_000;
/** Pages and runs (continue-as-new, cron, retry) read on the way to a chain's close event. */
const RESULT_READS = 100;

type Payloads = { payloads?: Parameters<typeof defaultPayloadConverter.fromPayload>[0][] | null } | null | undefined;
type RawFailure = Parameters<DefaultFailureConverter['failureToError']>[0];
type CloseEvent = {
  workflowExecutionCompletedEventAttributes?: { result?: Payloads; newExecutionRunId?: string } | null;
  workflowExecutionFailedEventAttributes?: { failure?: RawFailure | null; newExecutionRunId?: string } | null;
  workflowExecutionTimedOutEventAttributes?: { newExecutionRunId?: string } | null;
  workflowExecutionTerminatedEventAttributes?: { reason?: string } | null;
  workflowExecutionCanceledEventAttributes?: { details?: Payloads } | null;
  workflowExecutionContinuedAsNewEventAttributes?: { newExecutionRunId?: string } | null;
};
type DescribeReply = Parameters<typeof workflowVersion>[0] & { workflowExecutionInfo?: { execution?: { runId?: string } | null; status?: number | null } | null };
type QueryReply = { queryResult?: Payloads };
type ListReply = {
  executions?: Array<{
    execution?: { workflowId?: string } | null;
    type?: { name?: string } | null;
    startTime?: Timestamp;
    closeTime?: Timestamp;
    status?: number | null;
    searchAttributes?: { indexedFields?: Parameters<typeof decodeTypedSearchAttributes>[0] } | null;
  }> | null;
  nextPageToken?: Uint8Array | null;
};
type HistoryReply = { history?: { events?: CloseEvent[] | null } | null; nextPageToken?: Uint8Array | null };

const STATUS_PREFIX = 'WORKFLOW_EXECUTION_STATUS_';
const statusName = (value: number | null | undefined): WorkflowStatusName => {
  const name = enumKey(SUBSET_ENUMS.WorkflowExecutionStatus.values, value ?? 0);
  if (!name) return 'UNKNOWN';
  const short = name.slice(STATUS_PREFIX.length);
  return (short === 'CANCELED' ? 'CANCELLED' : short) as WorkflowStatusName;
};

/** Visibility pages hold up to this many workflows: the server's own default cap. */
const LIST_PAGE = 1000;

const buffer = (bytes: Uint8Array | undefined): Buffer | null => (bytes ? Buffer.from(bytes) : null);

const isServiceError = (err: unknown): err is ServiceError => err instanceof Error && typeof (err as Partial<ServiceError>).code === 'number' && (err as Partial<ServiceError>).metadata instanceof Metadata;

export async function openWorkflowReader(conn: Connection): Promise<WorkflowReader> {
  const { address, tls, apiKey } = await temporalConnectOptions(conn);
  const root = protobuf.Root.fromJSON(WORKFLOW_SERVICE_SUBSET);
  const type = (name: string): protobuf.Type => root.lookupType(`temporal.api.workflowservice.v1.${name}`);
  // As the SDK: an API key implies TLS, with the system's roots unless a CA is given.
  const useTls = tls !== undefined || apiKey !== undefined;
  const creds: ChannelCredentials = useTls ? credentials.createSsl(buffer(tls?.serverRootCACertificate), buffer(tls?.clientCertPair?.key), buffer(tls?.clientCertPair?.crt)) : credentials.createInsecure();
  const serverName = tls?.serverNameOverride;
  const grpc = new GrpcClient(address, creds, {
    'grpc.max_receive_message_length': 128 * 1024 * 1024,
    ...(serverName ? { 'grpc.ssl_target_name_override': serverName, 'grpc.default_authority': serverName } : {}),
  });
  const metadata = new Metadata();
  metadata.set('temporal-namespace', conn.temporalNamespace);
  if (apiKey) metadata.set('authorization', `Bearer ${apiKey}`);
  const namespace = conn.temporalNamespace;

  // grpc-js ends its details with an empty "Resolution note: " when name resolution had nothing to say.
  const unreachable = (err: ServiceError): PtcError =>
    new PtcError(ErrorCode.NOT_CONNECTED, `cannot reach Temporal at ${address}: ${err.details.replace(/\.? Resolution note: *$/, '')}; is \`ptctl dev\` running?`, { cause: err });
  const call = <Reply>(method: string, request: Record<string, unknown>, deadlineMs: number): Promise<Reply> => {
    const requestType = type(`${method}Request`);
    const replyType = type(`${method}Response`);
    return new Promise((resolve, reject) => {
      grpc.makeUnaryRequest(
        `/${WORKFLOW_SERVICE}/${method}`,
        (value: Record<string, unknown>) => {
          const bytes = requestType.encode(requestType.fromObject(value)).finish();
          return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        },
        (bytes: Buffer) => replyType.decode(bytes) as unknown as Reply,
        request,
        metadata,
        { deadline: Date.now() + deadlineMs },
        (err, reply) => (err ? reject(err.code === GrpcCode.UNAVAILABLE ? unreachable(err) : err) : resolve(reply as Reply)),
      );
    });
  };
  const failureConverter = new DefaultFailureConverter();
  // As the SDK client: a query or a workflow returns one value, the first payload.
  const fromPayloads = <T>(payloads: Payloads): T => fromPayloadsAtIndex<T>(defaultPayloadConverter, 0, payloads?.payloads);

  return {
    async describe(workflowId) {
      let reply: DescribeReply;
      try {
        reply = await call<DescribeReply>('DescribeWorkflowExecution', { namespace, execution: { workflowId } }, READ_DEADLINE_MS);
      } catch (err) {
        if (isServiceError(err) && err.code === GrpcCode.NOT_FOUND) return null;
        if (isServiceError(err) && err.code === GrpcCode.DEADLINE_EXCEEDED) throw unreachable(err);
        throw err;
      }
      const info = reply.workflowExecutionInfo;
      return { workflowId, runId: info?.execution?.runId ?? '', status: statusName(info?.status), version: workflowVersion(reply) };
    },

    async query<T>(run: Pick<WorkflowDescription, 'workflowId' | 'runId'>, query: QueryDefinition<T>): Promise<T> {
      let reply: QueryReply;
      try {
        reply = await call<QueryReply>('QueryWorkflow', { namespace, execution: { workflowId: run.workflowId, runId: run.runId }, query: { queryType: query.name, queryArgs: { payloads: [] } } }, QUERY_DEADLINE_MS);
      } catch (err) {
        if (isServiceError(err) && err.code === GrpcCode.DEADLINE_EXCEEDED) {
          throw new PtcError(ErrorCode.NOT_CONNECTED, `no worker answered the ${query.name} query of ${run.workflowId} within ${QUERY_DEADLINE_MS / 1000} s; is \`ptctl worker\` (or \`ptctl dev\`) running?`, { cause: err });
        }
        if (isServiceError(err)) throw new PtcError(ErrorCode.OPERATION_FAILED, `the ${query.name} query of ${run.workflowId} failed: ${err.details}`, { cause: err });
        throw err;
      }
      return fromPayloads<T>(reply.queryResult);
    },

    async result<T>(run: Pick<WorkflowDescription, 'workflowId' | 'runId'>): Promise<T> {
      let runId = run.runId;
      let nextPageToken: Uint8Array | undefined;
      // Bounded: each turn reads a page or moves to the next run of the chain.
      for (let turn = 0; turn < RESULT_READS; turn++) {
        // Not a long poll (the SDK's waitNewEvent): the caller read the run as closed, so an open run here started since.
        const request = { namespace, execution: { workflowId: run.workflowId, runId }, skipArchival: true, historyEventFilterType: SUBSET_ENUMS.HistoryEventFilterType.values.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT, ...(nextPageToken ? { nextPageToken } : {}) };
        const reply = await call<HistoryReply>('GetWorkflowExecutionHistory', request, READ_DEADLINE_MS);
        const event = reply.history?.events?.[0];
        if (!event) {
          nextPageToken = reply.nextPageToken?.length ? reply.nextPageToken : undefined;
          if (nextPageToken) continue;
          throw new PtcError(ErrorCode.OPERATION_FAILED, `${run.workflowId} is running again (run ${runId} started after it was read as closed): ask \`ptctl status ${run.workflowId}\` again`);
        }
        nextPageToken = undefined;
        const next =
          event.workflowExecutionCompletedEventAttributes?.newExecutionRunId ||
          event.workflowExecutionFailedEventAttributes?.newExecutionRunId ||
          event.workflowExecutionTimedOutEventAttributes?.newExecutionRunId ||
          event.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId;
        if (next) {
          runId = next;
          continue;
        }
        // The SDK client's messages for each ending, so a reader of either sees the same sentence.
        const completed = event.workflowExecutionCompletedEventAttributes;
        if (completed) return fromPayloads<T>(completed.result);
        const failed = event.workflowExecutionFailedEventAttributes;
        if (failed?.failure) throw new WorkflowEndedError('Workflow execution failed', failureConverter.failureToError(failed.failure, defaultPayloadConverter));
        if (event.workflowExecutionCanceledEventAttributes) {
          const details = arrayFromPayloads(defaultPayloadConverter, event.workflowExecutionCanceledEventAttributes.details?.payloads);
          throw new WorkflowEndedError('Workflow execution cancelled', new CancelledFailure('Workflow canceled', details));
        }
        if (event.workflowExecutionTerminatedEventAttributes) {
          const reason = event.workflowExecutionTerminatedEventAttributes.reason || 'Workflow execution terminated';
          throw new WorkflowEndedError(reason, new TerminatedFailure(reason));
        }
        if (event.workflowExecutionTimedOutEventAttributes) throw new WorkflowEndedError('Workflow execution timed out', new TimeoutFailure('Workflow execution timed out', undefined, 'START_TO_CLOSE'));
        throw new PtcError(ErrorCode.INTERNAL, `${run.workflowId}: its close event is of a kind ptctl does not know`);
      }
      throw new PtcError(ErrorCode.OPERATION_FAILED, `${run.workflowId}: more than ${RESULT_READS} runs or pages before its close event`);
    },

    async list(query, limit) {
      const rows: ListedExecution[] = [];
      let nextPageToken: Uint8Array | undefined;
      do {
        const request = { namespace, query, pageSize: Math.min(limit - rows.length, LIST_PAGE), ...(nextPageToken ? { nextPageToken } : {}) };
        const reply = await call<ListReply>('ListWorkflowExecutions', request, READ_DEADLINE_MS);
        for (const wf of reply.executions ?? []) {
          if (rows.length >= limit) break;
          rows.push({
            workflowId: wf.execution?.workflowId ?? '',
            type: wf.type?.name ?? '',
            status: statusName(wf.status),
            startTime: timestampDate(wf.startTime) ?? new Date(0),
            closeTime: timestampDate(wf.closeTime),
            searchAttributes: decodeTypedSearchAttributes(wf.searchAttributes?.indexedFields),
          });
        }
        nextPageToken = reply.nextPageToken?.length ? reply.nextPageToken : undefined;
      } while (nextPageToken && rows.length < limit);
      return rows;
    },

    close: () => grpc.close(),
  };
}


import { type SearchAttributePair, defineSearchAttributeKey } from '@temporalio/common';

/**
 * Search attributes: how operators find work without reading histories (`ptctl list`, or
 * `temporal workflow list --query 'PtcHostId="h1"'`). Registered by the dev stack and by `ptctl worker`;
 * on a cluster where the worker may not register them, `temporal operator search-attribute create`.
 */
export const PtcHostId = defineSearchAttributeKey('PtcHostId', 'KEYWORD');
export const PtcBdf = defineSearchAttributeKey('PtcBdf', 'KEYWORD');
export const PtcGuest = defineSearchAttributeKey('PtcGuest', 'KEYWORD');
export const PtcRollout = defineSearchAttributeKey('PtcRollout', 'KEYWORD');
/** Operations: attached, compensated, needs-attention...; rollouts: succeeded, failed, cancelled, stopped. */
export const PtcOutcome = defineSearchAttributeKey('PtcOutcome', 'KEYWORD');
export const PtcFailedHosts = defineSearchAttributeKey('PtcFailedHosts', 'INT');

export const SEARCH_ATTRIBUTES = [PtcHostId, PtcBdf, PtcGuest, PtcRollout, PtcOutcome, PtcFailedHosts] as const;

/** The attributes an operation on one device carries from its start. */
export function operationSearchAttributes(req: { hostId: string; bdf: string; guest: string }, rollout?: string): SearchAttributePair[] {
  return [
    { key: PtcHostId, value: req.hostId },
    { key: PtcBdf, value: req.bdf },
    { key: PtcGuest, value: req.guest },
    ...(rollout ? [{ key: PtcRollout, value: rollout }] : []),
  ];
}

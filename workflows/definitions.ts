import { defineQuery } from '@temporalio/workflow';
import type { PassthroughStep, StepRecord } from '../schemas/passthrough.js';

/** Shared by workflow and clients: wire names are kebab-case and never change once published. */
export interface PassthroughProgress {
  step: PassthroughStep | 'done';
  steps: StepRecord[];
  waitingFor: string | null;
}

export const passthroughProgressQuery = defineQuery<PassthroughProgress>('passthrough-progress');

export const TASK_QUEUE = 'ptc';

/** `op/<hostId>/<bdf>/<n>`: meaningful ids, so the Temporal UI reads like the fleet. */
export const passthroughWorkflowId = (hostId: string, bdf: string, n: string): string => `op/${hostId}/${bdf}/${n}`;

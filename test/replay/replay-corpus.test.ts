import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, describe, it } from 'node:test';
import { Worker, bundleWorkflowCode, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { workflowBundleOptions } from '../../cli/worker.js';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils.js';
import { bundleWorkflows, productionSinks, quietTemporalRuntime } from '../helpers/temporal-env.js';
import type { StoredHistory } from '../helpers/history-export.js';

// The corpus lives in the source tree (this file runs from dist/test/replay/).
const CORPUS = fileURLToPath(new URL('../../../test/replay/corpus/', import.meta.url));
const INCOMPATIBLE = fileURLToPath(new URL('./incompatible-workflows.js', import.meta.url));

interface CorpusEntry extends StoredHistory {
  file: string;
}

async function readCorpus(): Promise<CorpusEntry[]> {
  const entries: CorpusEntry[] = [];
  for (const release of (await readdir(CORPUS, { withFileTypes: true })).filter((d) => d.isDirectory())) {
    for (const name of (await readdir(join(CORPUS, release.name))).filter((n) => n.endsWith('.json') && n !== 'index.json').sort()) {
      const stored = JSON.parse(await readFile(join(CORPUS, release.name, name), 'utf8')) as StoredHistory;
      entries.push({ ...stored, file: `${release.name}/${name}` });
    }
  }
  return entries;
}

async function replayAll(workflowBundle: WorkflowBundleWithSourceMap, entries: CorpusEntry[]): Promise<string[]> {
  const failures: string[] = [];
  // The original workflow id: workflows derive child ids from their own.
  const histories = entries.map((e) => ({ workflowId: e.workflowId, history: historyFromJSON(e.history) }));
  let i = 0;
  for await (const result of Worker.runReplayHistories({ workflowBundle, replayName: 'corpus', sinks: productionSinks() }, histories)) {
    const file = entries[i++]?.file ?? result.workflowId;
    if (result.error) failures.push(`${file}: ${result.error.name}: ${result.error.message.split('\n')[0] ?? ''}`);
  }
  return failures;
}

void describe('replay corpus: histories of earlier releases replay against the current workflow code', () => {
  let corpus: CorpusEntry[] = [];
  let bundle: WorkflowBundleWithSourceMap | undefined;
  before(async () => {
    quietTemporalRuntime();
    corpus = await readCorpus();
    bundle = await bundleWorkflows();
  });

  void it('holds histories of every workflow type (an empty corpus proves nothing)', () => {
    const types = new Set(corpus.map((e) => e.workflowType));
    for (const type of ['passthroughWorkflow', 'releaseWorkflow', 'hostEntityWorkflow', 'rolloutWorkflow', 'hostRolloutWorkflow', 'windowWorkflow']) {
      assert.ok(types.has(type), `no ${type} history in test/replay/corpus: run node scripts/replay-corpus.mjs capture LABEL`);
    }
  });

  void it('replays every stored history without a non-determinism error', async () => {
    assert.ok(bundle);
    assert.deepEqual(await replayAll(bundle, corpus), []);
  });

  void it('fails when a workflow changes incompatibly (the check can fail)', async () => {
    // A copy of the workflows whose saga starts with a timer: what an unpatched new step looks like.
    const incompatible = await bundleWorkflowCode(workflowBundleOptions(INCOMPATIBLE, []));
    const sagas = corpus.filter((e) => e.workflowType === 'passthroughWorkflow');
    assert.ok(sagas.length > 0);
    const failures = await replayAll(incompatible, sagas);
    assert.equal(failures.length, sagas.length, `every saga history must fail to replay on the incompatible code; failed: ${failures.length}/${sagas.length}`);
    assert.match(failures[0] ?? '', /DeterminismViolationError|[Nn]ondeterminism/);
  });
});

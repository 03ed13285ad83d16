import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { PROJECT_ROOT } from '../cli/tools.js';

/** One PromQL expression of the dashboard or the alert rules, and where it is. */
export interface DeployExpr {
  where: string;
  expr: string;
}

export const DASHBOARD_FILE = join('deploy', 'grafana', 'ptctl-dashboard.json');
export const ALERTS_FILE = join('deploy', 'prometheus', 'ptctl-alerts.yaml');

interface Panel {
  title?: string;
  targets?: Array<{ expr?: string }>;
  panels?: Panel[];
}

/** Every expression of a Grafana dashboard (rows nest panels) and of Prometheus rule groups. */
export function dashboardExprs(dashboard: { panels?: Panel[] }, file: string): DeployExpr[] {
  const out: DeployExpr[] = [];
  const walk = (panels: Panel[] | undefined): void => {
    for (const p of panels ?? []) {
      for (const t of p.targets ?? []) if (t.expr) out.push({ where: `${file}: panel "${p.title ?? '?'}"`, expr: t.expr });
      walk(p.panels);
    }
  };
  walk(dashboard.panels);
  return out;
}

export function ruleExprs(rules: { groups?: Array<{ name?: string; rules?: Array<{ alert?: string; record?: string; expr?: string }> }> }, file: string): DeployExpr[] {
  return (rules.groups ?? []).flatMap((g) => (g.rules ?? []).flatMap((r) => (r.expr ? [{ where: `${file}: ${r.alert ? `alert ${r.alert}` : `record ${r.record ?? '?'}`}`, expr: r.expr }] : [])));
}

/** Reads the dashboard and the alert rules under `root` (the project by default). */
export async function loadDeployChecks(root: string = PROJECT_ROOT): Promise<DeployExpr[]> {
  const dashboard = JSON.parse(await readFile(join(root, DASHBOARD_FILE), 'utf8')) as { panels?: Panel[] };
  const rules = parseYaml(await readFile(join(root, ALERTS_FILE), 'utf8')) as Parameters<typeof ruleExprs>[0];
  return [...dashboardExprs(dashboard, DASHBOARD_FILE), ...ruleExprs(rules, ALERTS_FILE)];
}

/**
 * The ptctl (`ptc_*`) and Temporal SDK (`temporal_*`) metric names an expression reads. Label values in
 * quotes are skipped, so `{state="ptc_x"}` is not taken for a metric.
 */
export function metricReferences(expr: string): string[] {
  const unquoted = expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""');
  return [...unquoted.matchAll(/(?<![a-zA-Z0-9_:])((?:ptc|temporal)_[a-zA-Z0-9_:]*)/g)].map((m) => m[1] ?? '');
}

/**
 * Names referenced but not exported. `known` are the registries' metric names; a histogram `h` also
 * exports `h_bucket`, `h_sum` and `h_count`. Only the `prefix` family is checked (the Temporal SDK's
 * names are checked against a live worker's scrape instead).
 */
export function missingMetrics(exprs: readonly DeployExpr[], known: ReadonlyMap<string, string>, prefix = 'ptc_'): Array<{ where: string; metric: string }> {
  const exists = (name: string): boolean => {
    if (known.has(name)) return true;
    const base = name.replace(/_(bucket|sum|count)$/, '');
    return base !== name && (known.get(base) === 'histogram' || known.get(base) === 'summary');
  };
  return exprs.flatMap((e) => metricReferences(e.expr).filter((m) => m.startsWith(prefix) && !exists(m)).map((metric) => ({ where: e.where, metric })));
}

import { z } from 'zod';
import { PlanFile, planDocTypes } from '../schemas/plan.js';

/**
 * docs/plan-reference.md, generated from the plan schema's descriptions, types and defaults, so the
 * reference cannot drift from what `ptctl plan` accepts. `node scripts/gen-plan-reference.mjs` writes
 * it (after a build); a unit test regenerates it in memory and compares with the committed file.
 */
export const PLAN_REFERENCE_FILE = 'docs/plan-reference.md';

interface Row {
  key: string;
  type: string;
  default: string;
  description: string;
}

interface Section {
  title: string;
  description: string;
  rows: Row[];
}

interface Layers {
  core: z.ZodType;
  optional: boolean;
  defaultValue: { value: unknown } | null;
  description: string | undefined;
  docType: { type: string; plural?: string | undefined } | undefined;
}

/** Peels optional/default/prefault/pipe wrappers; the outermost description and doc type win. */
function peel(schema: z.ZodType): Layers {
  let cur = schema;
  const out: Layers = { core: schema, optional: false, defaultValue: null, description: undefined, docType: undefined };
  for (;;) {
    out.description ??= cur.description;
    out.docType ??= planDocTypes.get(cur);
    if (cur instanceof z.ZodOptional) {
      out.optional = true;
      cur = cur.unwrap() as z.ZodType;
    } else if (cur instanceof z.ZodDefault || cur instanceof z.ZodPrefault) {
      out.defaultValue ??= { value: cur.def.defaultValue };
      cur = cur.unwrap() as z.ZodType;
    } else if (cur instanceof z.ZodPipe) {
      // A transform's reader writes its input side (a duration string, not milliseconds).
      cur = cur.in as z.ZodType;
    } else break;
  }
  out.core = cur;
  return out;
}

/** The anchor GitHub gives a heading. */
const slug = (heading: string): string =>
  heading
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');

const code = (s: string): string => `\`${s}\``;

function orList(items: readonly string[]): string {
  return items.length <= 1 ? (items[0] ?? '') : `${items.slice(0, -1).join(', ')} or ${items[items.length - 1] ?? ''}`;
}

function numberType(n: z.ZodNumber): string {
  const base = n.isInt ? 'integer' : 'number';
  const min = n.minValue !== null && Number.isFinite(n.minValue) && Math.abs(n.minValue) < Number.MAX_SAFE_INTEGER ? n.minValue : null;
  const max = n.maxValue !== null && Number.isFinite(n.maxValue) && Math.abs(n.maxValue) < Number.MAX_SAFE_INTEGER ? n.maxValue : null;
  if (min !== null && max !== null) return `${base} ${min}–${max}`;
  if (min !== null) return `${base} ≥ ${min}`;
  if (max !== null) return `${base} ≤ ${max}`;
  return base;
}

function renderDefault(l: Layers): string {
  if (l.defaultValue) {
    const v = l.defaultValue.value;
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return code(String(v));
    if (Array.isArray(v) && v.length === 0) return code('[]');
    if (typeof v === 'object' && v !== null && Object.keys(v).length === 0) return 'all defaults';
    return code(JSON.stringify(v));
  }
  return l.optional ? '—' : '**required**';
}

const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ');

function walkObject(title: string, obj: z.ZodObject, sections: Section[]): void {
  const section: Section = { title, description: obj.description ?? '', rows: [] };
  sections.push(section);
  const nested: (() => void)[] = [];
  const typeOf = (l: Layers, path: string): string => {
    if (l.docType) return l.docType.type;
    const s = l.core;
    if (s instanceof z.ZodObject) {
      nested.push(() => walkObject(path, s, sections));
      return `object, see [${path}](#${slug(path)})`;
    }
    if (s instanceof z.ZodArray) {
      const inner = peel(s.element as z.ZodType);
      if (inner.docType?.plural) return `list of ${inner.docType.plural}`;
      return `list of ${typeOf(inner, `${path}[]`)}`.replace(/^list of object,/, 'list of objects,');
    }
    if (s instanceof z.ZodString) return 'string';
    if (s instanceof z.ZodNumber) return numberType(s);
    if (s instanceof z.ZodBoolean) return 'boolean';
    if (s instanceof z.ZodEnum) return orList(s.options.map((o) => code(String(o))));
    if (s instanceof z.ZodUnion) return orList((s.options as readonly z.ZodType[]).map((o) => typeOf(peel(o), path)));
    return 'value';
  };
  const shape: Readonly<Record<string, z.ZodType>> = obj.shape;
  for (const [key, schema] of Object.entries(shape)) {
    const l = peel(schema);
    const path = title === '' ? key : `${title}.${key}`;
    // An object's own description heads its section; its row repeats only the first sentence.
    const element = l.core instanceof z.ZodArray ? peel(l.core.element as z.ZodType).core : l.core;
    const description = element instanceof z.ZodObject && element.description === l.description ? firstSentence(l.description) : (l.description ?? '');
    section.rows.push({ key: code(key), type: typeOf(l, path), default: renderDefault(l), description });
  }
  for (const walk of nested) walk();
}

function firstSentence(text: string | undefined): string {
  if (!text) return '';
  const m = /^.*?[.:](\s|$)/.exec(text);
  return (m ? m[0] : text).trim().replace(/[.:]$/, '');
}

/** The whole reference, as Markdown. Deterministic: same schema, same bytes. */
export function renderPlanReference(): string {
  const sections: Section[] = [];
  walkObject('', PlanFile, sections);
  const out: string[] = [
    '# Plan file reference',
    '',
    '<!-- Generated from schemas/plan.ts by `node scripts/gen-plan-reference.mjs` (after `npm run build`). Do not edit by hand: test/unit/plan.test.ts fails when this file and the schema disagree. -->',
    '',
    'A plan file is read by `ptctl plan FILE` (what would change, host by host; changes nothing) and `ptctl apply FILE` (carry it out as a rollout). Examples for the simulated demo fleet are in [examples/](../examples/).',
    '',
    'Problems in a plan file are all reported at once, one `path: message` line each (e.g. `assignments.1.device: expected a PCI address like 0000:09:00.0 (line 9)`).',
  ];
  for (const s of sections) {
    out.push('', `## ${s.title === '' ? 'Plan file' : code(s.title)}`, '');
    if (s.description) out.push(s.description, '');
    out.push('| Key | Type | Default | Description |', '| --- | --- | --- | --- |');
    for (const r of s.rows) out.push(`| ${cell(r.key)} | ${cell(r.type)} | ${cell(r.default)} | ${cell(r.description)} |`);
  }
  return out.join('\n') + '\n';
}

/** The indentation of every JSON document ptctl prints (printJson's). */
export const JSON_INDENT = 2;

/**
 * Plain objects and arrays are walked piece by piece; anything else (a Date, a Map, a class, a value
 * with its own toJSON) goes to JSON.stringify whole, which knows its rules.
 */
function isWalked(v: unknown): v is Record<string, unknown> | unknown[] {
  if (typeof v !== 'object' || v === null) return false;
  if (typeof (v as { toJSON?: unknown }).toJSON === 'function') return false;
  if (Array.isArray(v)) return true;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

/**
 * `value` as JSON text in pieces whose concatenation is exactly `JSON.stringify(value, null, 2)`:
 * objects field by field, arrays element by element, each array element stringified whole. So a
 * PlanResolution comes out as its top-level fields and then one piece per host, and what is in memory
 * at once is one host's text, not the 100 MB document. (One difference no ptctl document meets: a
 * toJSON method below the top is called with key '' instead of its field name.)
 */
export function* jsonChunks(value: unknown): Generator<string, void, undefined> {
  const text = isWalked(value) ? null : indented(value, '');
  if (text === undefined) return;
  if (text !== null) yield text;
  else yield* walk(value as Record<string, unknown> | unknown[], '');
}

function* walk(v: Record<string, unknown> | unknown[], pad: string): Generator<string, void, undefined> {
  const inner = pad + ' '.repeat(JSON_INDENT);
  if (Array.isArray(v)) {
    if (v.length === 0) {
      yield '[]';
      return;
    }
    for (let i = 0; i < v.length; i++) {
      // As in JSON.stringify, an element with no JSON form (undefined, a function) is null in an array.
      yield `${i === 0 ? '[' : ','}\n${inner}${indented(v[i], inner) ?? 'null'}`;
    }
    yield `\n${pad}]`;
    return;
  }
  let first = true;
  for (const key of Object.keys(v)) {
    const field = v[key];
    const text = isWalked(field) ? null : indented(field, inner);
    // As in JSON.stringify, a field with no JSON form is left out.
    if (text === undefined) continue;
    yield `${first ? '{' : ','}\n${inner}${JSON.stringify(key)}: `;
    first = false;
    if (text !== null) yield text;
    else yield* walk(field as Record<string, unknown> | unknown[], inner);
  }
  yield first ? '{}' : `\n${pad}}`;
}

/**
 * One value's JSON as it appears at indentation `pad`; undefined when it has none. Re-indenting is a
 * plain newline replace: JSON escapes every newline inside a string, so each one in the text is layout.
 */
function indented(v: unknown, pad: string): string | undefined {
  const text = JSON.stringify(v, null, JSON_INDENT) as string | undefined;
  return text === undefined || pad === '' ? text : text.replace(/\n/g, `\n${pad}`);
}

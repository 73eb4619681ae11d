// Completions from the rule set's vocabulary (GET data-vocabulary-url, fetched once per page):
// input and output names, the values of an input after `name ==`, `name !=` or `name in [`
// (quoted, as a condition needs them), an output's values after `name:` in a `then`, functions,
// keywords, and the keys of a rule (or a case) at the start of a line.

const KEY_LINE = /^(\s*)(- +)?([A-Za-z_]*)$/; // a key being typed: nothing but indentation (and a list dash) before it
const COMPARED = /([a-z][\w.]*)\s*(?:==|!=)\s*(["']?)([^"'\s]*)$/;
const LISTED = /([a-z][\w.]*)\s+(?:not\s+)?in\s*\[([^\]]*)$/;
const PAIRED = /([a-z][\w.]*)\s*:\s*([\w-]*)$/; // `value_segment: hi` in a then/given/expect mapping

export function vocabularyLoader(url) {
  let pending = null;
  return () => {
    if (!url) return Promise.resolve(null);
    if (!pending) {
      pending = fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then((response) => (response.ok ? response.json() : null))
        .catch(() => null)
        .then((vocabulary) => {
          if (!vocabulary) pending = null; // try again on the next completion
          return vocabulary;
        });
    }
    return pending;
  };
}

function quoted(values, quote, from, to) {
  const q = quote || '"';
  return {
    from,
    to,
    options: values.map((value) => ({ label: `${q}${value}${q}`, type: "enum", apply: `${q}${value}${q}` })),
    validFor: /^["']?[^"'\s,\]]*["']?$/,
  };
}

function valuesOf(vocabulary, name) {
  const spec = [...vocabulary.inputs, ...vocabulary.outputs].find((item) => item.name === name);
  return spec && spec.values && spec.values.length ? spec.values : null;
}

function names(vocabulary) {
  const inputs = vocabulary.inputs.map((item) => ({
    label: item.name,
    type: "variable",
    detail: item.type + (item.values && item.values.length ? ` · ${item.values.join(", ")}` : ""),
    info: item.description || undefined,
    boost: 2,
  }));
  const outputs = vocabulary.outputs.map((item) => ({
    label: item.name,
    type: "property",
    detail: `output · ${item.type}`,
    info: item.description || undefined,
  }));
  const functions = vocabulary.functions.map((item) => ({
    label: item.name,
    type: "function",
    detail: item.signature,
    info: item.description || undefined,
    apply: `${item.name}(`,
  }));
  const keywords = vocabulary.keywords.map((word) => ({ label: word, type: "keyword", boost: -1 }));
  return [...inputs, ...outputs, ...functions, ...keywords];
}

// The keys that may start this line: the file's top keys at the margin; input names under
// `given:`, output names under `then:`/`expect:`/`default:`; a rule's (or a case's) keys inside
// `rules:` (`cases:`); nothing under `inputs:` or `outputs:` (the names there are new).
function keysAt(state, line, key, vocabulary) {
  const indent = key[1].length + (key[2] ? key[2].length : 0);
  if (key[1].length === 0 && !key[2]) return vocabulary.top_keys || vocabulary.keys;
  let parent = null;
  let section = null;
  for (let n = line.number - 1; n >= 1 && line.number - n < 500; n--) {
    const text = state.doc.line(n).text;
    if (!text.trim() || /^\s*#/.test(text)) continue;
    const own = /^(\s*)(- +)?([\w.]+)\s*:/.exec(text);
    if (!own) continue;
    const depth = own[1].length + (own[2] ? own[2].length : 0);
    if (parent === null && (depth < indent || (depth === indent && own[2] && !key[2]))) parent = own[3];
    if (own[1].length === 0 && !own[2]) {
      section = own[3];
      break;
    }
  }
  const field = (items) => items.map((item) => item.name);
  if (parent === "given") return field(vocabulary.inputs);
  if (parent === "then" || parent === "expect" || parent === "default") return field(vocabulary.outputs);
  if (section === "rules" || section === "cases") return vocabulary.keys;
  return null;
}

export function completionSource(load) {
  return async (context) => {
    const line = context.state.doc.lineAt(context.pos);
    const before = line.text.slice(0, context.pos - line.from);
    const vocabulary = await load();
    if (!vocabulary || context.aborted) return null;

    const listed = LISTED.exec(before);
    if (listed) {
      const values = valuesOf(vocabulary, listed[1]);
      if (values) {
        const item = /(["']?)([^"',\s]*)$/.exec(listed[2]);
        return quoted(values, item[1], context.pos - item[0].length, context.pos);
      }
    }
    const compared = COMPARED.exec(before);
    if (compared) {
      const values = valuesOf(vocabulary, compared[1]);
      if (values) return quoted(values, compared[2], context.pos - compared[2].length - compared[3].length, context.pos);
    }

    const key = KEY_LINE.exec(before);
    if (key && (key[3] || context.explicit)) {
      const keys = keysAt(context.state, line, key, vocabulary);
      if (keys) {
        return {
          from: context.pos - key[3].length,
          options: keys.map((word) => ({ label: word, type: "keyword", apply: `${word}: ` })),
          validFor: /^[A-Za-z_]*$/,
        };
      }
    }

    const paired = PAIRED.exec(before);
    if (paired && !/^\s*(-\s+)?[\w]+\s*:\s*[\w-]*$/.test(before)) {
      // inside a flow mapping ({value_segment: hi}); a block key's value is a condition or text
      const values = valuesOf(vocabulary, paired[1]);
      if (values) {
        return {
          from: context.pos - paired[2].length,
          options: values.map((value) => ({ label: value, type: "enum" })),
          validFor: /^[\w-]*$/,
        };
      }
    }

    const word = context.matchBefore(/[A-Za-z_][\w.]*/);
    if (!word && !context.explicit) return null;
    return { from: word ? word.from : context.pos, options: names(vocabulary), validFor: /^[\w.]*$/ };
  };
}

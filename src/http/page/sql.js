// The condition tree <-> the WHERE text. The tree holds the constructs the builder edits
// (AND / OR / NOT groups over one-column conditions); parse() throws a TreeError for
// anything else, and the page then uses the text as written.
"use strict";

const SegSql = (() => {
  class TreeError extends Error {}

  let nextId = 1;
  const group = (op = "AND", children = [], not = false) => ({ kind: "group", id: nextId++, op, not, children });
  const cond = (column, op, values = []) => ({ kind: "cond", id: nextId++, column, op, values });

  // ---- rendering ------------------------------------------------------------------
  const NUMERIC = new Set(["int", "float"]);

  function literal(kind, v) {
    if (kind === "bool") return String(v).toUpperCase() === "TRUE" ? "TRUE" : "FALSE";
    if (NUMERIC.has(kind) && /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(String(v).trim())) return String(v).trim();
    return "'" + String(v).replace(/'/g, "''") + "'";
  }

  // The SQL of one condition, or null while it is incomplete (it is then left out).
  function condSql(c, kindOf) {
    const k = kindOf(c.column);
    const v = c.values.map((x) => String(x ?? "").trim());
    const col = c.column;
    switch (c.op) {
      case "between":
        if (v[0] && v[1]) return `${col} BETWEEN ${literal(k, v[0])} AND ${literal(k, v[1])}`;
        if (v[0]) return `${col} >= ${literal(k, v[0])}`;
        if (v[1]) return `${col} <= ${literal(k, v[1])}`;
        return null;
      case "in":
      case "not in": {
        const vals = v.filter((x) => x !== "");
        if (!vals.length) return null;
        return `${col} ${c.op === "in" ? "IN" : "NOT IN"} (${vals.map((x) => literal(k, x)).join(", ")})`;
      }
      case "contains":
        return v[0] ? `list_contains(${col}, ${literal("string", v[0])})` : null;
      case "is true":
        return col;
      case "is false":
        return `${col} = FALSE`;
      case "is null":
        return `${col} IS NULL`;
      case "is not null":
        return `${col} IS NOT NULL`;
      default: // = <> < <= > >=
        return v[0] ? `${col} ${c.op} ${literal(k, v[0])}` : null;
    }
  }

  function nodeSql(n, kindOf, nested) {
    if (n.kind === "cond") return condSql(n, kindOf);
    const parts = n.children.map((c) => nodeSql(c, kindOf, true)).filter((s) => s);
    if (!parts.length) return null;
    const inner = parts.join(` ${n.op} `);
    if (n.not) return `NOT (${inner})`;
    return nested && parts.length > 1 ? `(${inner})` : inner;
  }

  const render = (root, kindOf) => nodeSql(root, kindOf, false) || "";

  // ---- parsing --------------------------------------------------------------------
  const KEYWORDS = new Set(["AND", "OR", "NOT", "IN", "BETWEEN", "IS", "NULL", "TRUE", "FALSE"]);

  function tokenize(text) {
    const toks = [];
    const re = /\s*(?:(\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)|'((?:[^']|'')*)'|([A-Za-z_][A-Za-z0-9_.]*)|(<>|!=|<=|>=|[=<>(),-]))/y;
    let i = 0;
    while (i < text.length) {
      if (/^\s*$/.test(text.slice(i))) break;
      re.lastIndex = i;
      const m = re.exec(text);
      if (!m) throw new TreeError(`cannot read the text at "${text.slice(i, i + 12)}"`);
      i = re.lastIndex;
      if (m[1] !== undefined) toks.push({ t: "num", v: m[1] });
      else if (m[2] !== undefined) toks.push({ t: "str", v: m[2].replace(/''/g, "'") });
      else if (m[3] !== undefined) {
        const up = m[3].toUpperCase();
        toks.push(KEYWORDS.has(up) ? { t: "kw", v: up } : { t: "id", v: m[3] });
      } else toks.push({ t: "op", v: m[4] === "!=" ? "<>" : m[4] });
    }
    return toks;
  }

  function parse(text) {
    const toks = tokenize(text);
    let p = 0;
    const peek = () => toks[p];
    const isKw = (v) => peek() && peek().t === "kw" && peek().v === v;
    const isOp = (v) => peek() && peek().t === "op" && peek().v === v;
    const expect = (pred, what) => {
      if (!pred()) throw new TreeError(`expected ${what}${peek() ? ` near "${peek().v}"` : " at the end"}`);
      return toks[p++];
    };
    const lit = () => {
      const neg = isOp("-") ? (p++, "-") : "";
      const t = peek();
      if (t && (t.t === "num" || t.t === "str")) return p++, neg + t.v;
      if (t && t.t === "kw" && (t.v === "TRUE" || t.v === "FALSE")) return p++, t.v.toLowerCase();
      throw new TreeError(`the tree takes only number and text values${t ? ` (not "${t.v}")` : ""}`);
    };

    // Same-operator groups are flattened so the tree stays shallow.
    const combine = (op, items) => {
      if (items.length === 1) return items[0];
      const kids = [];
      for (const it of items) {
        if (it.kind === "group" && it.op === op && !it.not) kids.push(...it.children);
        else kids.push(it);
      }
      return group(op, kids);
    };
    const orExpr = () => {
      const items = [andExpr()];
      while (isKw("OR")) p++, items.push(andExpr());
      return combine("OR", items);
    };
    const andExpr = () => {
      const items = [notExpr()];
      while (isKw("AND")) p++, items.push(notExpr());
      return combine("AND", items);
    };
    const notExpr = () => {
      if (!isKw("NOT")) return primary();
      p++;
      const inner = notExpr();
      if (inner.kind === "group" && !inner.not) return (inner.not = true), inner;
      return group("AND", [inner], true);
    };
    const primary = () => {
      if (isOp("(")) {
        p++;
        const e = orExpr();
        expect(() => isOp(")"), '")"');
        return e;
      }
      const t = peek();
      if (!t || t.t !== "id") throw new TreeError(`the tree needs a column here${t ? ` (found "${t.v}")` : ""}`);
      p++;
      const col = t.v;
      if (isOp("(")) {
        if (col.toLowerCase() !== "list_contains") throw new TreeError(`the tree has no ${col}()`);
        p++;
        const c = expect(() => peek() && peek().t === "id", "a column").v;
        expect(() => isOp(","), '","');
        const v = lit();
        expect(() => isOp(")"), '")"');
        return cond(c, "contains", [v]);
      }
      let negated = false;
      if (isKw("NOT")) p++, (negated = true);
      if (isKw("IN")) {
        p++;
        expect(() => isOp("("), '"("');
        const vals = [lit()];
        while (isOp(",")) p++, vals.push(lit());
        expect(() => isOp(")"), '")"');
        return cond(col, negated ? "not in" : "in", vals);
      }
      if (isKw("BETWEEN")) {
        p++;
        const lo = lit();
        expect(() => isKw("AND"), "AND");
        const hi = lit();
        const c = cond(col, "between", [lo, hi]);
        return negated ? group("AND", [c], true) : c;
      }
      if (negated) throw new TreeError("NOT here must be followed by IN or BETWEEN");
      if (isKw("IS")) {
        p++;
        const not = isKw("NOT") ? (p++, true) : false;
        expect(() => isKw("NULL"), "NULL");
        return cond(col, not ? "is not null" : "is null");
      }
      if (peek() && peek().t === "op" && ["=", "<>", "<", "<=", ">", ">="].includes(peek().v)) {
        const op = toks[p++].v;
        if (op === "=" && (isKw("TRUE") || isKw("FALSE"))) return cond(col, toks[p++].v === "TRUE" ? "is true" : "is false");
        return cond(col, op, [lit()]);
      }
      return cond(col, "is true"); // a bare boolean column
    };

    if (!toks.length) return group("AND", []);
    const e = orExpr();
    if (p < toks.length) throw new TreeError(`unexpected "${toks[p].v}"`);
    return e.kind === "group" && !e.not ? e : group("AND", [e]);
  }

  return { TreeError, group, cond, render, parse, condSql };
})();

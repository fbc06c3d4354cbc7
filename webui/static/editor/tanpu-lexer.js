// Tanpu syntax highlighting in the browser: the same tokens as webui/highlight.py (the
// Pygments lexer the server uses), with the same CSS short names (.k, .kd, .nt, ...).
// Used by the editor's highlight layer and by the review page's diff.
(function (global) {
  "use strict";

  var DECLARATIONS = ["methodology", "input", "parameter", "let", "require", "cap", "forbid",
    "bonus", "flag", "example", "counter", "reward"];
  var TYPES = ["quantity", "number", "integer", "boolean", "text", "date", "datetime",
    "duration", "choice"];
  var OUTPUTS = ["baseline", "project", "leakage", "reduction", "points"];
  var WORD_OPERATORS = ["and", "or", "not", "in"];
  var KEYWORDS = ["version", "title", "issuer", "cite", "url", "year", "table", "equation",
    "section", "doi", "note", "status", "covers", "description", "effective", "from", "until",
    "timezone", "precedes", "optional", "between", "at", "least", "most", "label", "by",
    "source", "otherwise", "reject", "else", "per", "account", "day", "week", "month",
    "overlap", "duplicate", "on", "the", "record", "within", "more", "than", "records", "as",
    "if", "then", "case", "when", "end", "credited", "capped", "applicable", "rejected",
    "flagged"];

  function set(list) {
    var out = Object.create(null);
    list.forEach(function (w) { out[w] = true; });
    return out;
  }
  var isDecl = set(DECLARATIONS), isType = set(TYPES), isOutput = set(OUTPUTS),
      isWordOp = set(WORD_OPERATORS), isKeyword = set(KEYWORDS);
  var notUnits = set(DECLARATIONS.concat(TYPES, WORD_OPERATORS, KEYWORDS, ["true", "false"]));
  ["points", "day", "week", "month", "year"].forEach(function (w) { delete notUnits[w]; });

  var UNIT = "(?:[A-Za-zµ°%][A-Za-z0-9µ°%_]*(?:\\^-?[0-9]+)?(?:[/·*][A-Za-zµ°%][A-Za-z0-9µ°%_]*(?:\\^-?[0-9]+)?)*|%)";
  var NUMBER = "[0-9]+(?:\\.[0-9]+)?(?:[eE][+\\-]?[0-9]+)?";

  // [regex (sticky), class or function(match) -> [[text, class], ...]]
  var RULES = [
    [/[ \t\f\r\u3000]+/y, ""],
    [/#.*/y, "c1"],
    [/"(?:[^"\\]|\\.)*"/y, "s2"],
    [/"[^"]*/y, "s2"],
    [/\[(?:SRC|DER|ASM|MEM)\]/y, "nd"],
    [new RegExp("(\\[)(\\s*)(" + UNIT + "|1)(\\s*)(\\])", "y"), function (m, before) {
      if (!/\s$/.test(before)) { return null; }
      return [[m[1], "p"], [m[2], ""], [m[3], "nt"], [m[4], ""], [m[5], "p"]];
    }],
    [/(methodology)(\s+)([A-Za-z][A-Za-z0-9_.\-]*)/y, ["kd", "", "nc"]],
    [/(version)(\s+)([0-9]+\.[0-9]+\.[0-9]+(?:-[0-9A-Za-z.\-]+)?)/y, ["k", "", "mo"]],
    [/(precedes)(\s+)([A-Za-z][A-Za-z0-9_.\-]*)/y, ["k", "", "nc"]],
    [/[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?(?:Z|[+\-][0-9]{2}:[0-9]{2})?/y, "ld"],
    [/[0-9]{4}-[0-9]{2}-[0-9]{2}/y, "ld"],
    [/[0-9]+(?:st|nd|rd|th)\b/y, "mi"],
    [new RegExp("(" + NUMBER + ")([ \\t]*)(" + UNIT + ")(?![\\w(\\[])", "y"), function (m) {
      var word = m[3].split(/[\/·*^]/)[0];
      if (notUnits[word] && word === m[3]) { return null; }
      return [[m[1], "m"], [m[2], ""], [m[3], "nt"]];
    }],
    [/[0-9]+\.[0-9]+(?:[eE][+\-]?[0-9]+)?/y, "mf"],
    [/[0-9]+(?:[eE][+\-]?[0-9]+)?/y, "mi"],
    [/(?:UTC|[A-Z][A-Za-z_]+(?:\/[A-Za-z_+\-0-9]+)+)(?![\w\/])/y, "no"],
    [/[A-Z][A-Z0-9]*_[A-Z0-9_]*\b|[A-Z]{2,}[0-9]*\b/y, "nl"],
    [/[A-Za-z_\u00C0-\uFFFF][\w\u00C0-\uFFFF]*/y, function (m, before, text, end) {
      var w = m[0];
      var cls = w === "true" || w === "false" ? "kc"
        : isDecl[w] ? "kd" : isType[w] ? "kt" : isWordOp[w] ? "ow" : isOutput[w] ? "nb"
        : isKeyword[w] ? "k" : /^\s*\(/.test(text.slice(end)) ? "nf" : "n";
      return [[w, cls]];
    }],
    [/=>|<=|>=|==|!=|[≤≥≠×÷+\-*\/<>=^]/y, "o"],
    [/[{}()\[\],:;.]/y, "p"],
    [/[\s\S]/y, ""]
  ];

  // One line -> [[text, class], ...]; the texts joined are the line.
  function tokenize(line) {
    var out = [], pos = 0;
    while (pos < line.length) {
      var matched = false;
      for (var i = 0; i < RULES.length && !matched; i++) {
        var re = RULES[i][0], action = RULES[i][1];
        re.lastIndex = pos;
        var m = re.exec(line);
        if (!m || m[0].length === 0) { continue; }
        var tokens;
        if (typeof action === "function") {
          tokens = action(m, line.slice(0, pos), line, pos + m[0].length);
          if (!tokens) { continue; }
        } else if (Array.isArray(action)) {
          tokens = action.map(function (cls, k) { return [m[k + 1], cls]; });
        } else {
          tokens = [[m[0], action]];
        }
        tokens.forEach(function (t) { if (t[0]) { out.push(t); } });
        pos += m[0].length;
        matched = true;
      }
      if (!matched) { out.push([line[pos], ""]); pos += 1; }
    }
    return out;
  }

  function escapeHtml(text) {
    return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;");
  }

  // A line as HTML; marks: [{start, end, cls, title}] (0-based columns, end exclusive)
  // wrap those characters in <span class="cls">, e.g. a diagnostic's squiggle.
  function lineHtml(line, marks) {
    var tokens = tokenize(line);
    marks = marks || [];
    var html = "", col = 0;
    tokens.forEach(function (token) {
      var text = token[0], cls = token[1], start = col, end = col + text.length;
      // cut the token at the marks' edges
      var cuts = [start, end];
      marks.forEach(function (mk) {
        if (mk.start > start && mk.start < end) { cuts.push(mk.start); }
        if (mk.end > start && mk.end < end) { cuts.push(mk.end); }
      });
      cuts.sort(function (a, b) { return a - b; });
      for (var i = 0; i + 1 < cuts.length; i++) {
        var a = cuts[i], b = cuts[i + 1];
        if (a === b) { continue; }
        var piece = escapeHtml(text.slice(a - start, b - start));
        var extra = marks.filter(function (mk) { return mk.start <= a && mk.end >= b; })
          .map(function (mk) { return mk.cls; });
        var classes = [cls].concat(extra).filter(Boolean).join(" ");
        html += classes ? '<span class="' + classes + '">' + piece + "</span>" : piece;
      }
      col = end;
    });
    // a mark past the end of the line (a missing `}`): a visible space to put it under
    marks.forEach(function (mk) {
      if (mk.start >= line.length) { html += '<span class="' + mk.cls + ' eol"> </span>'; }
    });
    return html;
  }

  global.TanpuLexer = {tokenize: tokenize, lineHtml: lineHtml, escapeHtml: escapeHtml};
})(window);

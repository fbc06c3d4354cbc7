// Tanpu web UI: a little progressive enhancement; every page works without it.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="csrf-token"]');
  var token = meta ? meta.getAttribute("content") : "";

  // htmx (if a page loads it) and fetch calls send the CSRF token as a header.
  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRFToken"] = token;
  });
  window.tanpuFetch = function (url, options) {
    options = options || {};
    options.headers = Object.assign({"X-CSRFToken": token}, options.headers || {});
    options.credentials = "same-origin";
    return fetch(url, options);
  };

  // <form data-confirm="...">: ask before a consequential action.
  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) {
      event.preventDefault();
    }
  });

  // <input data-written="YYYY-MM-DD">: the publish forms warn when the date chosen differs
  // from the methodology's own effective date (the warning is the next .effective-differs).
  document.addEventListener("input", function (event) {
    var written = event.target.getAttribute && event.target.getAttribute("data-written");
    var form = event.target.form;
    var warning = written && form ? form.querySelector(".effective-differs") : null;
    if (warning) {
      warning.hidden = event.target.value === written;
    }
  });

  // <select data-autosubmit>: filters apply when changed.
  document.addEventListener("change", function (event) {
    if (event.target.hasAttribute && event.target.hasAttribute("data-autosubmit")) {
      event.target.form.submit();
    }
  });
})();

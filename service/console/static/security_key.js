// Keyturn console: the WebAuthn ceremony of a form marked data-webauthn="create" (add a key) or "get"
// (confirm an approval). Served from /console/static (CSP script-src 'self'; nothing inline). The options
// come from the server (data-options, POSTed with the form's CSRF token); the browser's answer is put in the
// form's hidden `credential` field and the form is submitted: the server verifies everything.
"use strict";
(function () {
  function fromB64url(s) {
    var b = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4));
    var out = new Uint8Array(b.length);
    for (var i = 0; i < b.length; i++) out[i] = b.charCodeAt(i);
    return out.buffer;
  }
  function toB64url(buf) {
    var bytes = new Uint8Array(buf), s = "";
    for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function descriptors(list) {
    return (list || []).map(function (d) { return Object.assign({}, d, { id: fromB64url(d.id) }); });
  }
  function publicKey(kind, o) {
    o.challenge = fromB64url(o.challenge);
    if (kind === "create") {
      o.user = Object.assign({}, o.user, { id: fromB64url(o.user.id) });
      o.excludeCredentials = descriptors(o.excludeCredentials);
    } else {
      o.allowCredentials = descriptors(o.allowCredentials);
    }
    return o;
  }
  function answer(cred) {
    var r = cred.response, out = { clientDataJSON: toB64url(r.clientDataJSON) };
    if (r.attestationObject) {
      out.attestationObject = toB64url(r.attestationObject);
      out.transports = r.getTransports ? r.getTransports() : [];
    } else {
      out.authenticatorData = toB64url(r.authenticatorData);
      out.signature = toB64url(r.signature);
      if (r.userHandle) out.userHandle = toB64url(r.userHandle);
    }
    return JSON.stringify({ id: cred.id, rawId: toB64url(cred.rawId), type: cred.type, response: out,
      clientExtensionResults: cred.getClientExtensionResults(), authenticatorAttachment: cred.authenticatorAttachment });
  }
  function setUp(form) {
    var kind = form.dataset.webauthn, error = form.querySelector("[data-webauthn-error]");
    var field = form.querySelector("input[name=credential]"), button = form.querySelector("button[type=submit]");
    function fail(message) { error.textContent = message; error.hidden = false; button.disabled = false; }
    form.addEventListener("submit", function (event) {
      if (field.value) return; // the answer is in: let the form go
      event.preventDefault();
      if (!form.reportValidity()) return;
      if (!window.PublicKeyCredential) { fail("This browser cannot use security keys."); return; }
      button.disabled = true;
      var body = new URLSearchParams({ csrf_token: form.querySelector("input[name=csrf_token]").value });
      fetch(form.dataset.options, { method: "POST", body: body, credentials: "same-origin" })
        .then(function (resp) {
          return resp.json().catch(function () {
            return { error: "Keyturn refused (" + resp.status + "): reload the page and try again." };
          }).then(function (data) {
            if (!resp.ok) {
              if (data.signin) { window.location.assign(data.signin); }
              throw new Error(data.error || "Keyturn refused.");
            }
            return data;
          });
        })
        .then(function (options) {
          var key = { publicKey: publicKey(kind, options) };
          return kind === "create" ? navigator.credentials.create(key) : navigator.credentials.get(key);
        })
        .then(function (cred) { field.value = answer(cred); form.submit(); })
        .catch(function (err) { fail(err && err.message ? err.message : "The security key did not answer."); });
    });
  }
  document.querySelectorAll("form[data-webauthn]").forEach(setUp);
})();

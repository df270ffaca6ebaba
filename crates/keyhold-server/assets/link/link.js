// Keyhold link page: opens a link share in the browser, as `keyhold link
// fetch` does (spec: docs/spec/links.md). WebCrypto does HKDF-SHA256 and
// AES-256-GCM; a password link's Argon2id is hash-wasm's (vendored, loaded
// only for password links). The fragment (the key) is read from
// location.hash and never sent anywhere: the only request is for the
// ciphertext. Nothing from decrypting is sent back to the server (A6).
'use strict';

(function () {
  const HEADER_LEN = 40;
  const SEGMENT = 65536;
  const TAG = 16;
  const MAX_ENTRIES = 100000;
  const MAX_PATH = 4096;
  const MAX_NAME = 255;
  // Argon2id bounds: the same pinned floor and ceiling as the CLI (A4).
  const FLOOR = { m: 64 * 1024, t: 2, p: 1 };
  const CEILING = { m: 512 * 1024, t: 8, p: 4 };
  const INFO_SALT = 'keyhold v1 2026-12 link password salt';
  const INFO_METADATA = 'keyhold v1 2026-12 link metadata key';
  const INFO_CONTENT = 'keyhold v1 2026-12 link content key';
  const utf8 = new TextEncoder();
  const fromUtf8 = new TextDecoder('utf-8', { fatal: true });

  const $ = (id) => document.getElementById(id);

  class LinkError extends Error {}

  function setStatus(text, error) {
    const status = $('status');
    status.textContent = text;
    status.className = error ? 'error' : '';
  }

  function fail(text) {
    setStatus(text, true);
    document.body.dataset.state = 'error';
  }

  function hex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  function b64url(bytes) {
    let s = '';
    for (const b of bytes) s += String.fromCharCode(b);
    return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  // The fragment: "k." or "p." and 43 characters of canonical base64url.
  function parseFragment(text) {
    const m = /^([kp])\.([A-Za-z0-9_-]{43})$/.exec(text);
    if (!m) throw new LinkError('This link is incomplete: copy the whole address, including the part after #.');
    const raw = atob(m[2].replace(/-/g, '+').replace(/_/g, '/') + '=');
    const secret = Uint8Array.from(raw, (c) => c.charCodeAt(0));
    if (secret.length !== 32 || b64url(secret) !== m[2]) {
      throw new LinkError('This link is incomplete: copy the whole address, including the part after #.');
    }
    return { password: m[1] === 'p', secret };
  }

  function padme(len) {
    if (len < 2) return len;
    let e = 0;
    while (2 ** (e + 1) <= len) e++;
    const s = e.toString(2).length;
    const unit = 2 ** (e - s);
    return Math.ceil(len / unit) * unit;
  }

  function parseHeader(b) {
    if (b.length < HEADER_LEN) throw new LinkError('truncated');
    const v = new DataView(b.buffer, b.byteOffset, HEADER_LEN);
    const magic = [0x4b, 0x48, 0x4c, 0x44, 0x01, 0x01, 0x0a];
    if (magic.some((x, i) => b[i] !== x)) throw new LinkError('not a link');
    const mode = b[23];
    const params = { m: v.getUint32(24), t: v.getUint32(28), p: v.getUint32(32) };
    const sealedLen = v.getUint32(36);
    if (mode === 1) {
      if (params.m || params.t || params.p) throw new LinkError('malformed');
    } else if (mode === 2) {
      if (params.m < FLOOR.m || params.t < FLOOR.t || params.p < FLOOR.p) {
        throw new LinkError('The link asks for a password hash weaker than allowed; refusing it.');
      }
      if (params.m > CEILING.m || params.t > CEILING.t || params.p > CEILING.p) {
        throw new LinkError('The link asks for a password hash costlier than allowed; refusing it.');
      }
    } else {
      throw new LinkError('malformed');
    }
    if (sealedLen < 32 || sealedLen > 16 * 1024 * 1024 + TAG) throw new LinkError('malformed');
    return { id: hex(b.subarray(7, 23)), password: mode === 2, params, sealedLen, bytes: b.slice(0, HEADER_LEN) };
  }

  async function hkdf(salt, ikm, info, bits) {
    const key = await crypto.subtle.importKey('raw', ikm, 'HKDF', false, ['deriveBits']);
    const out = await crypto.subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt, info: utf8.encode(info) }, key, bits);
    return new Uint8Array(out);
  }

  async function aesKey(raw) {
    return crypto.subtle.importKey('raw', raw, 'AES-GCM', false, ['decrypt']);
  }

  async function decrypt(key, nonce, aad, sealed) {
    try {
      const out = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: nonce, additionalData: aad, tagLength: 128 }, key, sealed);
      return new Uint8Array(out);
    } catch (e) {
      throw new LinkError('decrypt');
    }
  }

  function segmentNonce(index, last) {
    const nonce = new Uint8Array(12);
    new DataView(nonce.buffer).setBigUint64(3, BigInt(index));
    nonce[11] = last ? 1 : 0;
    return nonce;
  }

  function loadArgon2() {
    if (window.hashwasm) return Promise.resolve(window.hashwasm);
    return new Promise((resolve, reject) => {
      const script = document.createElement('script');
      script.src = 'assets/hash-wasm-argon2.umd.min.js';
      script.onload = () => resolve(window.hashwasm);
      script.onerror = () => reject(new LinkError('The password hash could not be loaded; try `keyhold link fetch`.'));
      document.head.appendChild(script);
    });
  }

  async function deriveKeys(header, fragment, password) {
    const idBytes = header.bytes.slice(7, 23);
    let ikm = fragment.secret;
    if (header.password) {
      const argon = await loadArgon2();
      const salt = await hkdf(idBytes, fragment.secret, INFO_SALT, 128);
      const stretched = await argon.argon2id({
        password: utf8.encode(password),
        salt,
        parallelism: header.params.p,
        iterations: header.params.t,
        memorySize: header.params.m,
        hashLength: 32,
        outputType: 'binary',
      });
      ikm = new Uint8Array(64);
      ikm.set(stretched, 0);
      ikm.set(fragment.secret, 32);
    }
    return {
      metadata: await aesKey(await hkdf(idBytes, ikm, INFO_METADATA, 256)),
      content: await aesKey(await hkdf(idBytes, ikm, INFO_CONTENT, 256)),
    };
  }

  function checkName(name) {
    if (!name || utf8.encode(name).length > MAX_NAME || name === '.' || name === '..' || /[/\\\0]/.test(name)) {
      throw new LinkError('malformed');
    }
  }

  function parseMetadata(p) {
    const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
    let at = 0;
    const need = (n) => {
      if (at + n > p.length) throw new LinkError('malformed');
    };
    const u8 = () => { need(1); return p[at++]; };
    const u16 = () => { need(2); const x = v.getUint16(at); at += 2; return x; };
    const u32 = () => { need(4); const x = v.getUint32(at); at += 4; return x; };
    const u64 = () => { need(8); const x = v.getBigUint64(at); at += 8; return x; };
    const text = (max) => {
      const len = u16();
      if (len > max) throw new LinkError('malformed');
      need(len);
      const s = fromUtf8.decode(p.subarray(at, at + len));
      at += len;
      return s;
    };
    need(8);
    const expires = Number(v.getBigInt64(0));
    at = 8;
    const kind = u8();
    if (kind !== 1 && kind !== 2) throw new LinkError('malformed');
    const name = text(MAX_NAME);
    checkName(name);
    const count = u32();
    if (count > MAX_ENTRIES || count * 15 > p.length - at) throw new LinkError('malformed');
    const entries = [];
    const folders = new Set();
    let previous = null;
    for (let i = 0; i < count; i++) {
      const ekind = u8();
      if (ekind !== 1 && ekind !== 2) throw new LinkError('malformed');
      const path = text(MAX_PATH);
      const size = u64();
      const mode = u32();
      path.split('/').forEach(checkName);
      if (mode > 0o777 || (ekind === 2 && size !== 0n)) throw new LinkError('malformed');
      if (previous !== null && compareBytes(utf8.encode(previous), utf8.encode(path)) >= 0) throw new LinkError('malformed');
      const slash = path.lastIndexOf('/');
      if (slash >= 0 && !folders.has(path.slice(0, slash))) throw new LinkError('malformed');
      if (ekind === 2) folders.add(path);
      if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw new LinkError('This link is too large to open in a browser; use `keyhold link fetch`.');
      entries.push({ path, folder: ekind === 2, size: Number(size) });
      previous = path;
    }
    if (p.length !== padme(at) || p.subarray(at).some((b) => b !== 0)) throw new LinkError('malformed');
    if (kind === 1 && !(entries.length === 1 && !entries[0].folder && entries[0].path === name)) throw new LinkError('malformed');
    return { expires, folder: kind === 2, name, entries };
  }

  function compareBytes(a, b) {
    for (let i = 0; i < Math.min(a.length, b.length); i++) {
      if (a[i] !== b[i]) return a[i] - b[i];
    }
    return a.length - b.length;
  }

  // Decrypts every content segment, in order, and splits the plaintext over
  // the file entries; what follows the content must be zero padding.
  async function openContent(key, header, meta, sealed) {
    const files = meta.entries.filter((e) => !e.folder);
    const contentLen = files.reduce((sum, e) => sum + e.size, 0);
    const padded = padme(contentLen);
    const segments = Math.max(1, Math.ceil(padded / SEGMENT));
    const parts = files.map(() => []);
    let file = 0;
    let offset = 0;
    let position = 0;
    let at = 0;
    for (let i = 0; i < segments; i++) {
      const last = i === segments - 1;
      const plainLen = last ? padded - i * SEGMENT : SEGMENT;
      if (at + plainLen + TAG > sealed.length) throw new LinkError('truncated');
      const plain = await decrypt(key, segmentNonce(i, last), header.bytes, sealed.subarray(at, at + plainLen + TAG));
      at += plainLen + TAG;
      const contentHere = Math.min(Math.max(contentLen - position, 0), plain.length);
      position += plain.length;
      if (plain.subarray(contentHere).some((b) => b !== 0)) throw new LinkError('malformed');
      let rest = plain.subarray(0, contentHere);
      while (rest.length > 0) {
        while (file < files.length && offset === files[file].size) {
          file++;
          offset = 0;
        }
        const n = Math.min(files[file].size - offset, rest.length);
        parts[file].push(rest.slice(0, n));
        offset += n;
        rest = rest.subarray(n);
      }
    }
    if (at !== sealed.length) throw new LinkError('malformed');
    return files.map((e, i) => ({ entry: e, blob: new Blob(parts[i], { type: 'application/octet-stream' }) }));
  }

  function humanSize(n) {
    const units = ['bytes', 'KiB', 'MiB', 'GiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return (i === 0 ? n : n.toFixed(1)) + ' ' + units[i];
  }

  function render(meta, opened) {
    $('name').textContent = meta.name;
    const files = opened.length;
    const total = opened.reduce((sum, f) => sum + f.entry.size, 0);
    $('summary').textContent = meta.folder
      ? 'Folder: ' + files + ' file(s), ' + humanSize(total) + '. Available until ' + new Date(meta.expires).toLocaleString() + '.'
      : 'File, ' + humanSize(total) + '. Available until ' + new Date(meta.expires).toLocaleString() + '.';
    const list = $('entries');
    for (const entry of meta.entries) {
      const li = document.createElement('li');
      const label = document.createElement('span');
      label.className = 'path';
      label.textContent = entry.folder ? entry.path + '/' : entry.path;
      li.appendChild(label);
      if (!entry.folder) {
        const found = opened.find((f) => f.entry === entry);
        const a = document.createElement('a');
        a.className = 'download';
        a.href = URL.createObjectURL(found.blob);
        a.download = entry.path.split('/').pop();
        a.dataset.path = entry.path;
        a.textContent = 'Download (' + humanSize(entry.size) + ')';
        li.appendChild(a);
      } else {
        const size = document.createElement('span');
        size.className = 'size';
        size.textContent = 'folder';
        li.appendChild(size);
      }
      list.appendChild(li);
    }
    $('result').hidden = false;
    setStatus('Decrypted in your browser.', false);
    document.body.dataset.state = 'ready';
  }

  function askPassword() {
    return new Promise((resolve) => {
      const form = $('unlock');
      form.hidden = false;
      setStatus('Enter the password you were given with this link.', false);
      document.body.dataset.state = 'password';
      $('password').focus();
      form.addEventListener('submit', (event) => {
        event.preventDefault();
        const value = $('password').value;
        if (!value) return;
        form.hidden = true;
        resolve(value);
      });
    });
  }

  async function fetchObject(base, id) {
    const response = await fetch(base + '/v1/links/' + id + '/object', {
      cache: 'no-store',
      credentials: 'omit',
      referrerPolicy: 'no-referrer',
    });
    if (response.status === 404) throw new LinkError('There is no such link on this server (it may have been removed, or the address is mistyped).');
    if (response.status === 410) throw new LinkError('This link has expired or was revoked by the person who shared it.');
    if (!response.ok) throw new LinkError('The server answered ' + response.status + '; try again later.');
    return new Uint8Array(await response.arrayBuffer());
  }

  async function main() {
    const path = /^(.*)\/l\/([0-9a-f]{32})$/.exec(location.pathname);
    if (!path) throw new LinkError('This is not a Keyhold link address.');
    const [, prefix, id] = path;
    const fragment = parseFragment(decodeURIComponent(location.hash.slice(1)));
    const base = location.origin + prefix;
    const password = fragment.password ? await askPassword() : null;
    setStatus('Downloading…', false);
    const stored = await fetchObject(base, id);
    setStatus('Decrypting…', false);
    const header = parseHeader(stored);
    if (header.id !== id) throw new LinkError('The server sent another link than the one asked for; refusing it.');
    if (header.password !== fragment.password) {
      throw new LinkError('This link is damaged: its address and its content disagree on the password.');
    }
    const keys = await deriveKeys(header, fragment, password);
    const sealedMeta = stored.subarray(HEADER_LEN, HEADER_LEN + header.sealedLen);
    if (sealedMeta.length !== header.sealedLen) throw new LinkError('truncated');
    let meta;
    try {
      meta = parseMetadata(await decrypt(keys.metadata, new Uint8Array(12), header.bytes, sealedMeta));
    } catch (e) {
      if (e instanceof LinkError && e.message === 'decrypt') {
        throw new LinkError(
          header.password
            ? 'Wrong password, or the link was altered. Reload the page to try again.'
            : 'This link does not open: the address is incomplete or the content was altered.'
        );
      }
      throw e;
    }
    if (Date.now() >= meta.expires) throw new LinkError('This link has expired.');
    const opened = await openContent(keys.content, header, meta, stored.subarray(HEADER_LEN + header.sealedLen));
    render(meta, opened);
  }

  function start() {
    main().catch((e) => {
      if (e instanceof LinkError && !['decrypt', 'malformed', 'truncated', 'not a link'].includes(e.message)) {
        fail(e.message);
      } else {
        fail('This link does not open: its content is damaged or was altered. Nothing was saved.');
      }
    });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();

-- ncauth.lua: Dovecot Lua passdb that asks the ncauth daemon (`ncauth serve`) to
-- authenticate mail users against Nextcloud's database.
--
-- Needs the Debian packages dovecot-auth-lua and lua-socket. Works with Dovecot 2.3
-- (Debian 12) and 2.4 (Debian 13); both link Lua 5.4, and the script keeps to what
-- Lua 5.1-5.4 have in common.
--
--   Dovecot 2.3:  passdb {
--                   driver = lua
--                   args = file=/etc/dovecot/ncauth.lua blocking=yes
--                 }
--   Dovecot 2.4:  passdb lua {
--                   lua_file = /etc/dovecot/ncauth.lua
--                 }
--   both:         userdb prefetch (the userdb_* fields of a login), then `userdb lua`
--                 (auth_userdb_lookup below) for lookups without a login (LMTP,
--                 doveadm user), and auth_userdb_iterate for `doveadm user '*'` and
--                 `doveadm -A`. `ncauth dovecot-config --mode lua` writes all of it.
--
-- The script runs in Dovecot's auth-worker processes (root by default; blocking=yes on
-- 2.3, use_worker = yes is the default on 2.4). Each worker has its own Lua state, and
-- the locals below live as long as that state, so each worker keeps one connection to
-- the daemon and reuses it for every request it handles.
--
-- Protocol: docs/protocol.md in the ncauth source is the specification. In short: a
-- VERSION 1 handshake, then LF-terminated lines of TAB-separated fields, each tab-escaped
-- the Dovecot way; AUTH/LOOKUP/USERS requests carry an id that the OK/FAIL/UNKNOWN/TEMPFAIL
-- answer echoes (USERS: one USER line per account, then OK count=<N>).
--
-- Verdicts: OK -> PASSDB_RESULT_OK; FAIL -> PASSWORD_MISMATCH; UNKNOWN -> USER_UNKNOWN;
-- TEMPFAIL, no daemon, a timeout or any answer that is not understood -> INTERNAL_FAILURE
-- (Dovecot says "temporary failure"): an outage never looks like a wrong password.
-- The password is sent to the daemon and nowhere else: it is never logged.

-- `ncauth dovecot-config --mode lua` rewrites the next line with the configured path.
local NCAUTH_SOCKET = "/run/ncauth/auth.sock"
-- Seconds one request may take in all (connect, send, answer). Below Postfix's 10 s
-- SASL timeout and Dovecot's 60 s auth-worker limit, above argon2 plus a short queue.
local NCAUTH_TIMEOUT = 8
-- Seconds the list of all accounts may take (doveadm -A): no login waits on it, and
-- reading every account of a large Nextcloud takes longer than one lookup.
local NCAUTH_LIST_TIMEOUT = 50

local socket = require("socket")
local unix = require("socket.unix")

local MAX_LINE = 16384   -- ncauth/protocol.py MAX_LINE: the longest line either side sends

-- What an existence lookup (auth_passdb_lookup) hands Dovecot as the password: "*",
-- the /etc/shadow way of locking an account. No typed password matches it (crypt()
-- never returns "*"; Dovecot's CRYPT verify reports a plain mismatch, not an error,
-- on 2.3.19 and 2.4.1: `doveadm pw -t '{CRYPT}*' -p x`). See auth_passdb_lookup.
local LOCKED_PASSWORD = "{CRYPT}*"

local ESCAPES = { ["\1"] = "\1" .. "1", ["\t"] = "\1t", ["\r"] = "\1r", ["\n"] = "\1n" }
local UNESCAPES = { ["1"] = "\1", t = "\t", r = "\r", n = "\n" }

local function tab_escape(s)
  return (string.gsub(s, "[\1\t\r\n]", ESCAPES))
end

local function tab_unescape(s)
  if not string.find(s, "\1", 1, true) then
    return s
  end
  -- as Dovecot's str_tabunescape: 0x01 before any other byte yields that byte
  return (string.gsub(s, "\1(.?)", function(c) return UNESCAPES[c] or c end))
end

local function split_fields(line)
  local fields, pos = {}, 1
  while true do
    local tab = string.find(line, "\t", pos, true)
    if not tab then
      fields[#fields + 1] = tab_unescape(string.sub(line, pos))
      return fields
    end
    fields[#fields + 1] = tab_unescape(string.sub(line, pos, tab - 1))
    pos = tab + 1
  end
end

local function encode_line(fields)
  local out = {}
  for i = 1, #fields do
    out[i] = tab_escape(fields[i])
  end
  return table.concat(out, "\t") .. "\n"
end

-- ---- the connection ------------------------------------------------------------------

local conn = nil      -- LuaSocket unix stream to the daemon, or nil
local last_id = 0     -- request ids, echoed by the daemon

local function disconnect()
  if conn then
    pcall(conn.close, conn)
    conn = nil
  end
end

local function remaining(deadline)
  return deadline - socket.gettime()
end

local function connect(deadline)
  local new_stream = (type(unix) == "table" and unix.stream) or unix  -- LuaSocket 3 / 2
  local c, err = new_stream()
  if not c then
    return nil, "cannot create a socket: " .. tostring(err)
  end
  c:settimeout(math.max(remaining(deadline), 0.001), "t")
  local ok, cerr = c:connect(NCAUTH_SOCKET)
  if not ok then
    pcall(c.close, c)
    return nil, "cannot connect to " .. NCAUTH_SOCKET .. ": " .. tostring(cerr)
  end
  return c
end

-- An idle connection that has something to read was closed by the daemon (idle timeout,
-- restart) or is out of step: either way, not worth sending on.
local function is_stale(c)
  local readable = socket.select({ c }, nil, 0)
  return readable ~= nil and readable[1] ~= nil
end

local function send_all(c, data, deadline)
  local left = remaining(deadline)
  if left <= 0 then
    return nil, "timeout"
  end
  c:settimeout(left, "t")
  local last, err = c:send(data)
  if not last then
    return nil, err
  end
  return true
end

local function receive_line(c, deadline)
  local left = remaining(deadline)
  if left <= 0 then
    return nil, "timeout"
  end
  c:settimeout(left, "t")
  local line, err = c:receive("*l")
  if not line then
    return nil, err
  end
  if #line >= MAX_LINE then
    return nil, "answer longer than " .. MAX_LINE .. " bytes"
  end
  return line
end

local VERSION_LINE = encode_line({ "VERSION", "1", "0" })

-- The value of the answer's first `key=value` field named *key*, or nil.
local function value_of(fields, key)
  local prefix = key .. "="
  for i = 3, #fields do
    if string.sub(fields[i], 1, #prefix) == prefix then
      return string.sub(fields[i], #prefix + 1)
    end
  end
  return nil
end

local function reason_of(fields)
  return value_of(fields, "reason") or "no reason given"
end

-- Send one request line and return the first answer line's fields, or nil and why not,
-- by *deadline* (socket.gettime() seconds). A fresh connection carries the VERSION
-- handshake in the same write. A reused connection that turns out to be broken is
-- replaced once; a fresh one that fails is the daemon's answer (down, refusing us), and
-- a timeout is never retried. Any failure drops the connection, so a late answer can
-- never be taken for the next request's. Further answer lines (USERS) are the caller's
-- to read from `conn`, by the same deadline.
local function exchange(line, deadline)
  for attempt = 1, 2 do
    if conn and is_stale(conn) then
      disconnect()
    end
    local fresh = conn == nil
    if fresh then
      local c, err = connect(deadline)
      if not c then
        return nil, err
      end
      conn = c
    end
    local ok, err = send_all(conn, fresh and (VERSION_LINE .. line) or line, deadline)
    if ok and fresh then
      local hello
      hello, err = receive_line(conn, deadline)
      if hello then
        local f = split_fields(hello)
        if f[1] ~= "VERSION" or f[2] ~= "1" then
          disconnect()
          if f[1] == "TEMPFAIL" then
            return nil, "handshake refused: " .. reason_of(f)
          end
          return nil, "unexpected handshake answer (not VERSION 1)"
        end
      else
        ok = false
      end
    end
    if ok then
      local answer
      answer, err = receive_line(conn, deadline)
      if answer then
        return split_fields(answer)
      end
    end
    disconnect()
    if fresh or err == "timeout" or attempt == 2 then
      if fresh and err == "closed" then
        err = "connection closed by the daemon (is this uid in [daemon] allowed_users?)"
      end
      return nil, tostring(err)
    end
    -- a reused connection broke (daemon restarted): once more on a new one
  end
end

-- ---- requests ------------------------------------------------------------------------

local function request_fields(req)
  local extra = {}
  local service = req.service or req.protocol   -- 2.3: %{service}; 2.4: %{protocol}
  if service and service ~= "" then
    extra[#extra + 1] = "service=" .. service
  end
  if req.remote_ip and req.remote_ip ~= "" then
    extra[#extra + 1] = "rip=" .. req.remote_ip
  end
  if req.local_ip and req.local_ip ~= "" then
    extra[#extra + 1] = "lip=" .. req.local_ip
  end
  return extra
end

-- Ask the daemon. Returns verdict ("OK", "FAIL", "UNKNOWN", "TEMPFAIL", or "TOOLONG"
-- for a request no daemon would take) plus the answer's fields or an explanation.
local function ask(command, user, password, req)
  last_id = last_id + 1
  local id = tostring(last_id)
  local fields = { command, id, user }
  if password then
    fields[#fields + 1] = password
  end
  local extra = request_fields(req)
  for i = 1, #extra do
    fields[#fields + 1] = extra[i]
  end
  local line = encode_line(fields)
  if #line > MAX_LINE then
    return "TOOLONG", "request longer than " .. MAX_LINE .. " bytes"
  end

  local answer, err = exchange(line, socket.gettime() + NCAUTH_TIMEOUT)
  if not answer then
    return "TEMPFAIL", "ncauth daemon unavailable: " .. err
  end
  local verdict = answer[1]
  if answer[2] ~= id then
    disconnect()
    if verdict == "TEMPFAIL" then   -- e.g. "TEMPFAIL 0" before the daemon hangs up
      return "TEMPFAIL", "ncauth daemon: " .. reason_of(answer)
    end
    return "TEMPFAIL", "malformed answer from the ncauth daemon (request id mismatch)"
  end
  if verdict == "OK" then
    -- pass on the canonical user name and the userdb_* fields, nothing else (a daemon
    -- field must never turn into a passdb extra such as nopassword or proxy)
    local out = {}
    for i = 3, #answer do
      local key, value = string.match(answer[i], "^([^=]*)=(.*)$")
      if key and (key == "user" or (string.sub(key, 1, 7) == "userdb_" and #key > 7)) then
        out[key] = value
      end
    end
    return "OK", out
  elseif verdict == "FAIL" or verdict == "UNKNOWN" then
    return verdict, reason_of(answer)
  elseif verdict == "TEMPFAIL" then
    return "TEMPFAIL", "ncauth daemon: temporary failure: " .. reason_of(answer)
  end
  disconnect()
  return "TEMPFAIL", "malformed answer from the ncauth daemon"
end

-- A bug or a Lua error must neither leave the connection out of step nor look like a
-- wrong password: catch it here, drop the connection, report an internal failure. The
-- error text names no request data, so no password can end up in a log.
local function safe_ask(command, user, password, req)
  local ok, verdict, detail = pcall(ask, command, user, password, req)
  if not ok then
    disconnect()
    return "TEMPFAIL", "ncauth.lua: " .. tostring(verdict)
  end
  return verdict, detail
end

-- The canonical names of all accounts the daemon serves (USERS), or nil and why not.
-- Only a whole list counts: it ends with OK and the number of names sent before it.
local function list_users()
  last_id = last_id + 1
  local id = tostring(last_id)
  local deadline = socket.gettime() + NCAUTH_LIST_TIMEOUT
  local answer, err = exchange(encode_line({ "USERS", id }), deadline)
  if not answer then
    return nil, "ncauth daemon unavailable: " .. err
  end
  local names = {}
  while answer[1] == "USER" and answer[2] == id and #answer == 3 do
    names[#names + 1] = answer[3]
    local line
    line, err = receive_line(conn, deadline)
    if not line then
      disconnect()
      return nil, "ncauth daemon: list cut off after " .. #names .. " name(s): " .. tostring(err)
    end
    answer = split_fields(line)
  end
  if answer[2] == id and answer[1] == "OK" and value_of(answer, "count") == tostring(#names) then
    return names
  end
  disconnect()
  if answer[2] == id and answer[1] == "TEMPFAIL" then
    return nil, "ncauth daemon: temporary failure: " .. reason_of(answer)
  end
  return nil, "malformed answer from the ncauth daemon to USERS"
end

-- ---- the Dovecot entry points --------------------------------------------------------

function auth_password_verify(req, password)
  local verdict, detail = safe_ask("AUTH", req.user, password, req)
  if verdict == "OK" then
    return dovecot.auth.PASSDB_RESULT_OK, detail
  elseif verdict == "FAIL" or verdict == "TOOLONG" then
    -- no Nextcloud credential is 16 KiB long: a plain mismatch, not an outage
    req:log_debug("ncauth: refused: " .. detail)
    return dovecot.auth.PASSDB_RESULT_PASSWORD_MISMATCH, "refused by ncauth"
  elseif verdict == "UNKNOWN" then
    req:log_debug("ncauth: unknown user: " .. detail)
    return dovecot.auth.PASSDB_RESULT_USER_UNKNOWN, "unknown user"
  end
  -- 2.3 requires a string (not nil) next to a non-OK result; Dovecot logs it as an error
  return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, detail
end

-- Lookups without a password: `doveadm auth lookup`, `userdb static` existence checks
-- (LMTP, doveadm user), master-user logins, proxies. Dovecot (passdb-lua.c, 2.3.19 and
-- 2.4.1) accepts an OK lookup only with a password or with `nopassword`; we give it
-- LOCKED_PASSWORD and never `nopassword`, for this reason:
--  * Plaintext logins always go through auth_password_verify() above, because it is
--    defined; without Dovecot's auth cache, nopassword would be harmless.
--  * But Dovecot caches passdb lookups: on 2.3 the Lua passdb's cache key is %u unless
--    args say otherwise, so it is cached as soon as auth_cache_size > 0; on 2.4 it is
--    cached when auth_passdb_get_cache_key() below is enabled. A lookup that returned
--    nopassword is stored with an empty password, and a later login for that user hits
--    passdb-cache.c's "Cached NULL password access" branch and is accepted with ANY
--    password until the entry expires; on a temporary failure Dovecot even falls back
--    to the expired entry ("Falling back to expired data from cache"). LMTP deliveries
--    with `userdb static` do such a lookup for every recipient.
--  * LOCKED_PASSWORD can never match. A cached lookup entry fails the cache check;
--    since the lookup was a success, Dovecot then asks auth_password_verify() above,
--    so a wrong password is refused and the right one gets in (but see the cache key
--    note further down). Mechanisms that need credentials (CRAM-MD5, SCRAM; ncauth's
--    snippets enable only PLAIN and LOGIN) get "we have only CRYPT" and fail.
--  Tried on 2.3.19 and 2.4.1 with auth_cache_size = 1M: with nopassword, a lookup and
--  then a login with a wrong password -> "Cached NULL password access", logged in
--  (also with the daemon stopped); with LOCKED_PASSWORD -> refused.
function auth_passdb_lookup(req)
  local verdict, detail = safe_ask("LOOKUP", req.user, nil, req)
  if verdict == "OK" then
    detail.password = LOCKED_PASSWORD
    return dovecot.auth.PASSDB_RESULT_OK, detail
  elseif verdict == "UNKNOWN" or verdict == "FAIL" or verdict == "TOOLONG" then
    -- FAIL on a lookup: the daemon refuses the user (e.g. disabled): no such mail user
    req:log_debug("ncauth: lookup: " .. detail)
    return dovecot.auth.PASSDB_RESULT_USER_UNKNOWN, "unknown user"
  end
  return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, detail
end

-- Userdb lookups without a login (LMTP delivery, doveadm user) when the snippet has
-- `userdb lua` after `userdb prefetch`: the daemon's LOOKUP, with the userdb_ prefix
-- taken off as Dovecot's userdb expects. A disabled Nextcloud user still exists here
-- (mail keeps arriving); the login path refuses them.
function auth_userdb_lookup(req)
  local verdict, detail = safe_ask("LOOKUP", req.user, nil, req)
  if verdict == "OK" then
    local fields = {}
    for key, value in pairs(detail) do
      if string.sub(key, 1, 7) == "userdb_" then
        fields[string.sub(key, 8)] = value
      end
    end
    return dovecot.auth.USERDB_RESULT_OK, fields
  elseif verdict == "UNKNOWN" or verdict == "FAIL" or verdict == "TOOLONG" then
    req:log_debug("ncauth: userdb lookup: " .. detail)
    return dovecot.auth.USERDB_RESULT_USER_UNKNOWN, "unknown user"
  end
  return dovecot.auth.USERDB_RESULT_INTERNAL_FAILURE, detail
end

-- `doveadm user '*'` and `doveadm -A`: Dovecot (db-lua.c, 2.3.19 and 2.4) calls this
-- without arguments, in an auth-worker, and takes the values of the table it returns as
-- the user names (keys are ignored). A Lua error, or anything but a table, makes the
-- iteration fail: Dovecot logs "auth_userdb_iterate failed: <message>" and doveadm exits
-- non-zero. An empty table is a success with no users, so an outage must raise, never
-- return {}: `doveadm -A` would otherwise quietly do nothing.
function auth_userdb_iterate()
  local ok, names, err = pcall(list_users)
  if not ok then
    disconnect()
    error("ncauth.lua: " .. tostring(names), 0)
  end
  if not names then
    error(err, 0)
  end
  return names
end

-- Dovecot's own auth cache stays off for this passdb on 2.4 (no cache key function):
-- the daemon has its own cache, which drops an entry the moment the password hash in
-- Nextcloud changes, while Dovecot's cache keeps an old password working until
-- auth_cache_ttl runs out (or `doveadm auth cache flush`). To turn it on anyway (saves
-- the round trip to the daemon), uncomment the function and set auth_cache_size (e.g.
-- 10M) and a short auth_cache_ttl / auth_cache_negative_ttl in dovecot.conf:
--
-- function auth_passdb_get_cache_key()
--   return "%{user}%{mechanism}"     -- Dovecot 2.4 syntax
-- end
--
-- Keep %{mechanism} in the key: lookups have no mechanism, so their entries (holding
-- LOCKED_PASSWORD) stay apart from those of logins. With "%{user}" alone, a lookup
-- (every LMTP delivery with `userdb static`) followed by one wrong password makes the
-- right password fail from the cache until auth_cache_negative_ttl has passed.
--
-- Dovecot 2.3 never calls this function. Its Lua passdb always has a cache key (%u,
-- or args cache_key=...) and is cached whenever auth_cache_size > 0 (default 0 = off),
-- so on 2.3 the switch is auth_cache_size, and with the cache on the args should read
--   args = file=/etc/dovecot/ncauth.lua blocking=yes cache_key=%u%m
-- (same reason as above). Never write an empty `cache_key=`: 2.3.19's auth process
-- crashes on it (NULL dereference, signal 11).

function script_init()
  return 0
end

function script_deinit()
  disconnect()
end

-- Runs config/argocd/health.lua the way Argo CD does, over status snapshots from the e2e tests, and
-- checks each result against the snapshot's expect.argocd. Prints a table; exits 1 on any mismatch.
--
--   lua health_test.lua HEALTH_LUA [--min N] SNAPSHOT.json...
--
-- Needs dkjson (Debian: lua-dkjson). Works with Lua 5.1 (Argo CD's gopher-lua dialect) to 5.4.
local json = require("dkjson")

local script_path = arg[1]
if script_path == nil then
  io.stderr:write("usage: lua health_test.lua HEALTH_LUA [--min N] SNAPSHOT.json...\n")
  os.exit(2)
end
local min, files = 0, {}
local i = 2
while i <= #arg do
  if arg[i] == "--min" then
    min = tonumber(arg[i + 1]) or error("--min needs a number")
    i = i + 2
  else
    files[#files + 1] = arg[i]
    i = i + 1
  end
end

local STATUSES = { Healthy = true, Progressing = true, Degraded = true, Suspended = true, Missing = true }

-- Only what Argo CD's sandbox offers a health script: no io, os, require or load.
local function sandbox(obj)
  return {
    obj = obj, string = string, table = table, math = math, ipairs = ipairs, pairs = pairs,
    next = next, select = select, tostring = tostring, tonumber = tonumber, type = type,
    error = error, pcall = pcall,
  }
end

local function run_script(obj)
  local chunk, err
  if setfenv then -- Lua 5.1
    chunk, err = loadfile(script_path)
    if chunk then setfenv(chunk, sandbox(obj)) end
  else
    chunk, err = loadfile(script_path, "t", sandbox(obj))
  end
  if not chunk then error(err) end
  local ok, hs = pcall(chunk)
  if not ok then return nil, "script error: " .. tostring(hs) end
  if type(hs) ~= "table" then return nil, "script returned " .. type(hs) .. ", not a table" end
  if not STATUSES[hs.status] then return nil, "invalid status " .. tostring(hs.status) end
  if type(hs.message) ~= "string" or hs.message == "" then return nil, "no message" end
  return hs
end

-- Argo CD (gitops-engine) answers "Progressing: Pending deletion" for any object with a
-- deletionTimestamp before a health script runs; model that so expectations match what users see.
local function argo_health(obj)
  if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
    return { status = "Progressing", message = "Pending deletion" }, "argocd"
  end
  local hs, err = run_script(obj)
  return hs, "health.lua", err
end

local function read(path)
  local f, err = io.open(path, "r")
  if not f then return nil, err end
  local text = f:read("*a")
  f:close()
  return text
end

local rows, failures = {}, 0
local function add(name, expected, hs, by, err)
  local got = hs and hs.status or "ERROR"
  local ok = err == nil and got == expected
  if not ok then failures = failures + 1 end
  local message = err or (hs and hs.message) or ""
  if #message > 70 then message = message:sub(1, 67) .. "..." end
  rows[#rows + 1] = { name, expected or "?", got, by or "", ok and "ok" or "MISMATCH", message }
end

for _, path in ipairs(files) do
  local name = path:match("([^/]+)%.json$") or path
  local text, rerr = read(path)
  local doc, _, derr = nil, nil, nil
  if text then doc, _, derr = json.decode(text) end
  if not doc then
    add(name, nil, nil, nil, "unreadable: " .. tostring(rerr or derr))
  elseif type(doc.expect) ~= "table" or not STATUSES[doc.expect.argocd] or type(doc.object) ~= "table" then
    add(name, nil, nil, nil, "not a snapshot (expect.argocd and object required)")
  else
    local hs, by, err = argo_health(doc.object)
    add(name, doc.expect.argocd, hs, by, err)
  end
end

-- Synthetic cases for branches no e2e test reaches, built from nothing but the rules above.
local function cond(type_, status, reason, message)
  return { type = type_, status = status, reason = reason, message = message or "" }
end
local synthetic = {
  { "synthetic:ready-and-degraded", "Degraded", { metadata = { generation = 2 }, status = { observedGeneration = 2,
    conditions = { cond("Ready", "True", "Reconciled", "ok"), cond("Degraded", "True", "KeyInvalid", "key disabled") } } } },
  { "synthetic:ready-unknown", "Progressing", { metadata = { generation = 1 }, status = { observedGeneration = 1,
    conditions = { cond("Ready", "Unknown", "Progressing") } } } },
  { "synthetic:stalled-over-old-generation", "Progressing", { metadata = { generation = 3 }, status = {
    observedGeneration = 2, conditions = { cond("Stalled", "True", "KeyDisabled", "enable the key") } } } },
  { "synthetic:empty-status", "Progressing", { metadata = { generation = 1 }, status = {} } },
}
for _, case in ipairs(synthetic) do
  local hs, by, err = argo_health(case[3])
  add(case[1], case[2], hs, by, err)
end

local widths = { 8, 6, 6, 6, 6, 7 }
local header = { "SNAPSHOT", "EXPECT", "ARGOCD", "BY", "RESULT", "MESSAGE" }
for _, row in ipairs(rows) do
  for c = 1, #widths do widths[c] = math.max(widths[c], #row[c]) end
end
local function line(row)
  local parts = {}
  for c = 1, #row do parts[c] = row[c] .. string.rep(" ", widths[c] - #row[c]) end
  print((table.concat(parts, "  "):gsub("%s+$", "")))
end
line(header)
for _, row in ipairs(rows) do line(row) end

if #files < min then
  print(string.format("FAIL: %d snapshot file(s) given, at least %d expected: run the e2e tests first", #files, min))
  os.exit(1)
end
if failures > 0 then
  print(string.format("FAIL: %d of %d case(s) disagree with expect.argocd", failures, #rows))
  os.exit(1)
end
print(string.format("argocd health: %d snapshot(s) and %d synthetic case(s) agree (%s)", #files, #synthetic, _VERSION))

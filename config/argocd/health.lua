-- Argo CD health check for encryption.atlasops.dev/v1alpha1 ProjectEncryption and ClusterEncryption.
--
-- Argo CD runs this with the live object in the global `obj` and shows the returned status. It reads
-- the conditions the operator writes for kstatus (Ready, Reconciling, Stalled) plus the Degraded
-- domain condition, in the same order kstatus does, so Argo CD and Flux agree:
--   no status yet                         -> Progressing "Waiting for the operator"
--   observedGeneration ~= generation      -> Progressing (the spec change is not handled yet)
--   Stalled=True                          -> Degraded, with what a person must do
--   Reconciling=True                      -> Progressing, with what is awaited
--   Degraded=True                         -> Degraded (Atlas reports the key invalid)
--   Ready=True, reason ChangesPlanned     -> Suspended (managementPolicy: Observe, writes planned)
--   Ready=True                            -> Healthy (a due rotation or a retired key at risk in KMS is
--                                            named in the message: the key in force works)
--   Ready=False/Unknown                   -> Progressing
-- Written for Lua 5.1 (Argo CD's gopher-lua) and tested with Lua 5.1 and 5.4: `make test-health`.
-- Generated into config/argocd/argocd-cm-health.yaml by scripts/argocd-health.sh; edit this file only.

local hs = {}

local function conditions()
  if obj.status == nil or obj.status.conditions == nil then
    return {}
  end
  return obj.status.conditions
end

local function find(type_)
  for _, c in ipairs(conditions()) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

-- "Reason: message", or the fallback when the condition carries no message.
local function describe(c, fallback)
  local message = c.message
  if message == nil or message == "" then
    message = fallback
  end
  if c.reason ~= nil and c.reason ~= "" then
    return c.reason .. ": " .. message
  end
  return message
end

if #conditions() == 0 then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed ~= generation then
  hs.status = "Progressing"
  hs.message = string.format("Waiting for the operator to act on generation %d (status is of generation %d)",
    generation, observed)
  return hs
end

local stalled = find("Stalled")
if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = describe(stalled, "the operator needs a person to act")
  return hs
end

local reconciling = find("Reconciling")
if is_true(reconciling) then
  hs.status = "Progressing"
  hs.message = describe(reconciling, "reconciling")
  return hs
end

-- The operator raises Stalled together with Degraded, so kstatus reports Failed too; this also holds
-- should an object ever carry Degraded=True beside Ready=True: Argo CD then errs on the safe side.
local degraded = find("Degraded")
if is_true(degraded) then
  hs.status = "Degraded"
  hs.message = describe(degraded, "Atlas reports the key invalid")
  return hs
end

local ready = find("Ready")
-- managementPolicy: Observe with writes planned: the operator did all it may (Ready, so kstatus and
-- Flux move on), and a person reviews status.plannedChanges and switches to Manage.
if is_true(ready) and ready.reason == "ChangesPlanned" then
  hs.status = "Suspended"
  hs.message = describe(ready, "changes planned, not made")
  return hs
end

if is_true(ready) then
  hs.status = "Healthy"
  hs.message = ready.message
  if hs.message == nil or hs.message == "" then
    hs.message = ready.reason
  end
  local due = find("KeyRotationDue")
  if is_true(due) then
    hs.message = hs.message .. " (key rotation due: " .. (due.message or "") .. ")"
  end
  local risk = find("PreviousKeyAtRisk")
  if is_true(risk) then
    hs.message = hs.message .. " (retired key at risk: " .. (risk.message or "") .. ")"
  end
  return hs
end

if ready ~= nil then
  hs.status = "Progressing"
  hs.message = describe(ready, "not ready yet")
  return hs
end

hs.status = "Progressing"
hs.message = "Waiting for the operator"
return hs

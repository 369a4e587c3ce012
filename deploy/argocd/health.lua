-- Argo CD health check for coffer.dev/v1alpha1 SealedSecret.
-- Install as resource.customizations.health.coffer.dev_SealedSecret in
-- argocd-cm (deploy/argocd/argocd-cm.yaml holds this same script).
-- Argo CD runs it without Lua's string library: only .. and tostring.
local hs = {}

-- "<reason>: <message>", or whichever of the two is set.
local function describe(c)
  local reason = c.reason or ""
  local message = c.message or ""
  if reason == "" then
    return message
  end
  if message == "" then
    return reason
  end
  return reason .. ": " .. message
end

-- The condition's message, else its reason, else `default`.
local function message_of(c, default)
  if c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return c.reason or default
end

-- Until the controller reports on this generation, its conditions describe
-- an earlier spec (or none): observedGeneration is -1 until it first acts.
local generation = obj.metadata.generation
local status = obj.status
if status == nil or status.observedGeneration == nil or
    status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller to unseal generation " .. tostring(generation)
  return hs
end

local conditions = {}
if status.conditions ~= nil then
  for _, c in ipairs(status.conditions) do
    if c.type ~= nil then
      conditions[c.type] = c
    end
  end
end
local ready = conditions["Ready"]
local stalled = conditions["Stalled"]
local reconciling = conditions["Reconciling"]

-- A refusal (ScopeMismatch, NoMatchingKey, KeyRetired, Tampered, ...) does
-- not fix itself: the SealedSecret or the keys must change.
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

-- Work is pending, e.g. a retry after a transient API error.
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = message_of(reconciling, "Reconciling")
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message_of(ready, "Unsealed")
  return hs
end

-- A controller that reports no Stalled condition (older versions) says
-- Ready=False only for refusals.
if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(ready)
  return hs
end

hs.status = "Progressing"
if ready ~= nil and describe(ready) ~= "" then
  hs.message = describe(ready)
else
  hs.message = "Waiting for the controller to unseal generation " .. tostring(generation)
end
return hs

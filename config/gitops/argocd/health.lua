-- Argo CD health check for intuned.io IntunedJob and WebhookReceiver.
-- Both kinds report kstatus conditions (docs/status.md); this reads them the
-- way kstatus does, so Argo CD, Flux, kstatus and `kubectl wait
-- --for=condition=Ready` agree:
--   status not yet written for this generation  -> Progressing
--   Stalled=True (a person must act)             -> Degraded
--   Ready=True, reason Suspended (spec.suspend)  -> Suspended
--   Ready=True                                   -> Healthy
--   anything else (working, retrying, waiting)   -> Progressing
-- Argo CD itself reports an object being deleted as Progressing before it
-- runs this script.
local hs = {}

local function condition(conditions, type)
  for _, c in ipairs(conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end
if obj.metadata.generation ~= nil and obj.status.observedGeneration ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. obj.metadata.generation
  return hs
end

local stalled = condition(obj.status.conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.reason .. ": " .. (stalled.message or "")
  return hs
end

local ready = condition(obj.status.conditions, "Ready")
if ready ~= nil and ready.status == "True" and ready.observedGeneration == obj.metadata.generation then
  if ready.reason == "Suspended" then
    hs.status = "Suspended"
  else
    hs.status = "Healthy"
  end
  hs.message = ready.message or ""
  return hs
end

hs.status = "Progressing"
if ready ~= nil then
  hs.message = ready.reason .. ": " .. (ready.message or "")
else
  hs.message = "Waiting for the Ready condition"
end
return hs

-- Argo CD health check for finetune.aidaptiv.io/FineTuneJob (Lua 5.1, as Argo CD runs it).
--
--   status.observedGeneration missing or != metadata.generation -> Progressing
--   Failed phase, or any Stalled=True condition  -> Degraded
--   Succeeded -> Healthy;  Suspended by spec.suspend, or Queued with its Workload deactivated -> Suspended;
--   Pending, Running, Queued (waiting for admission, preempted, evicted), no status -> Progressing
--   (an operator before the Queued phase said Suspended, reason WaitingForAdmission: Progressing too)
--
-- Progressing here is exactly kstatus's InProgress (the operator's Reconciling=True condition), so
-- Argo CD and kstatus-based tools (Flux, kpt, Config Sync) wait for the same trainings.
--
-- A status written for an older generation decides nothing, a failure included: that is kstatus's rule
-- too, and the operator observes a new generation within a second of the edit.
local hs = {}

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c == nil or c.reason == nil or c.reason == "" then
    return fallback
  end
  if c.message == nil or c.message == "" then
    return c.reason
  end
  return c.reason .. ": " .. c.message
end

local function number(n)
  if n == nil then
    return "none"
  end
  return string.format("%d", n)
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report a status"
  return hs
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local lagging = status.observedGeneration == nil
  or (generation ~= nil and status.observedGeneration ~= generation)
local lag = "generation " .. number(generation) .. " not observed yet (observed " .. number(status.observedGeneration) .. ")"

if lagging then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator: " .. lag
  return hs
end

local stalled = condition(status, "Stalled")
if stalled ~= nil and stalled.status ~= "True" then
  stalled = nil
end
if status.phase == "Failed" or stalled ~= nil then
  local failed = condition(status, "Failed")
  if failed == nil or failed.status ~= "True" then
    failed = stalled
  end
  hs.status = "Degraded"
  hs.message = describe(failed, "FineTuneJob failed")
  return hs
end

if status.phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = describe(condition(status, "Succeeded"), "Training complete")
  return hs
end

local suspended = condition(status, "Suspended")
local held = status.phase == "Suspended" and (suspended == nil or suspended.reason ~= "WaitingForAdmission")
local deactivated = status.phase == "Queued" and suspended ~= nil and suspended.reason == "Deactivated"
if held or deactivated then
  hs.status = "Suspended"
  hs.message = describe(suspended, "Training suspended")
  return hs
end

hs.status = "Progressing"
if status.phase == "Running" then
  hs.message = describe(condition(status, "Running"), "Training is running")
  local progress = status.trainerStatus
  if progress ~= nil and progress.progressPercentage ~= nil then
    hs.message = hs.message .. " (" .. number(progress.progressPercentage) .. "%)"
  end
elseif status.phase == "Queued" or status.phase == "Suspended" then
  hs.message = describe(suspended, "Waiting for admission by a queue")
elseif status.phase == "Pending" then
  hs.message = "Pending: waiting for the training Job and its pod to start"
elseif status.phase == nil then
  hs.message = "Waiting for the operator to set a phase"
else
  hs.message = "Unknown phase " .. tostring(status.phase)
end
return hs

-- Argo CD health check for finetune.aidaptiv.io/FineTuneJob (Lua 5.1, as Argo CD runs it).
--
--   Failed phase, or any Stalled=True condition  -> Degraded
--   status.observedGeneration missing or != metadata.generation -> Progressing
--   Succeeded -> Healthy;  Suspended -> Suspended;  Pending, Running, no status -> Progressing
--
-- A failure is reported even while the generation lags: Failed is final for this operator (it never
-- recreates a failed training), so no newer generation can make it healthy, and Progressing would only
-- hide the failure until the sync times out. Healthy and Suspended, on the other hand, need a status
-- written for the current generation.
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
  if lagging then
    hs.message = hs.message .. "; " .. lag
  end
  return hs
end

if lagging then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator: " .. lag
  return hs
end

if status.phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = describe(condition(status, "Succeeded"), "Training complete")
  return hs
end

if status.phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = describe(condition(status, "Suspended"), "Training suspended")
  return hs
end

hs.status = "Progressing"
if status.phase == "Running" then
  hs.message = describe(condition(status, "Running"), "Training is running")
  local progress = status.trainerStatus
  if progress ~= nil and progress.progressPercentage ~= nil then
    hs.message = hs.message .. " (" .. number(progress.progressPercentage) .. "%)"
  end
elseif status.phase == "Pending" then
  hs.message = "Pending: waiting for the training Job and its pod to start"
elseif status.phase == nil then
  hs.message = "Waiting for the operator to set a phase"
else
  hs.message = "Unknown phase " .. tostring(status.phase)
end
return hs

-- wrk script: rotate.lua's requests, with a pause of 20 ms between the requests of each
-- connection, so the load is steady and leaves the machine's cores to the rest of a run.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "rotate.lua")

function delay()
  return 20
end

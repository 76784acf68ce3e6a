-- recipe.lua: the words an image recipe (images/NAME.lua) is written in.
--
-- recipe.c loads this file into a Lua state of its own and calls evaluate(chunk), which runs
-- the recipe's chunk in an environment holding only these words and the pure parts of Lua's
-- libraries: no io, no os, no require, no load. So the recipe's text (and the host files it
-- copies, which recipe.c hashes) alone decides the image and its cache key.
--
-- evaluate returns the recipe as a table in the shape of the build spec
-- (scripts/build-recipe-image): lists carry the ARRAY metatable and absent values are NULL,
-- so recipe.c turns it into JSON without guessing. Every item records the recipe line that
-- made it, for the errors found later (unknown package, missing file...).

local ARRAY = { __name = "array" }
local NULL = setmetatable({}, { __name = "null" })

local WORDS = "base, kernel, packages, copy, write, dir, user, group, modules, cmdline, hostname, pack"

local function array(t)
  return setmetatable(t or {}, ARRAY)
end

-- The recipe line of the word being called (level 3: the recipe, above the word and this).
local function caller_line()
  return debug.getinfo(3, "l").currentline
end

local function check_options(word, opts, known)
  if opts == nil then
    return {}
  end
  if type(opts) ~= "table" then
    error(word .. ": options must be a table, got " .. type(opts), 3)
  end
  for k in pairs(opts) do
    if not known[k] then
      local names = {}
      for n in pairs(known) do
        names[#names + 1] = n
      end
      table.sort(names)
      error(string.format("%s: unknown option '%s' (known: %s)", word, tostring(k),
        table.concat(names, ", ")), 3)
    end
  end
  return opts
end

local function check_path(word, what, p)
  if type(p) ~= "string" or p:sub(1, 1) ~= "/" then
    error(string.format("%s: %s must be an absolute guest path, got %s", word, what,
      type(p) == "string" and string.format("%q", p) or type(p)), 3)
  end
  if p:find("%z") or p:find("/%.%./") or p:find("/%.%.$") then
    error(string.format("%s: %s %q may not contain '..' or NUL", word, what, p), 3)
  end
end

-- mode = "0644": an octal string, since Lua has no octal numbers (0644 is six hundred and
-- forty-four, which would silently become a strange mode).
local function check_mode(word, mode)
  if mode == nil then
    return NULL
  end
  local n = type(mode) == "string" and mode:match("^0?[0-7]+$") and tonumber(mode, 8)
  if not n or n > 4095 then
    error(string.format('%s: mode must be an octal string like "0644", got %s%s', word,
      type(mode) == "string" and string.format("%q", mode) or tostring(mode),
      math.type(mode) and " (Lua has no octal numbers: write it in quotes)" or ""), 3)
  end
  return n
end

local function check_name(word, what, s, pattern)
  if type(s) ~= "string" or not s:match(pattern) then
    error(string.format("%s: %s %s is not valid", word, what,
      type(s) == "string" and string.format("%q", s) or type(s)), 3)
  end
  return s
end

local USER_NAME = "^[a-z_][a-z0-9_-]*%$?$"
local PACKAGE_NAME = "^[a-z0-9][a-z0-9+.-]+$"
local PACKAGE_ARCH = "^[a-z0-9][a-z0-9+.-]+:[a-z0-9-]+$"
local MODULE_NAME = "^[A-Za-z0-9_-]+$"

local function opt_id(word, what, v)
  if v == nil then
    return NULL
  end
  if math.type(v) ~= "integer" or v < 0 or v > 65535 then
    error(string.format("%s: %s must be an integer 0..65535, got %s", word, what, tostring(v)), 3)
  end
  return v
end

local function opt_owner(word, opts, key)
  if opts[key] == nil then
    return NULL
  end
  return check_name(word, key, opts[key], USER_NAME)
end

local function new_spec()
  return {
    base = "default",
    kernel = "cloud",
    kernel_line = NULL,
    packages = array(),
    copies = array(),
    writes = array(),
    dirs = array(),
    users = array(),
    groups = array(),
    modules = array(),
    cmdline = NULL,
    cmdline_replace = false,
    hostname = NULL,
    pack = "auto",
  }
end

local function make_words(spec)
  local w = {}
  local once = {}

  local function only_once(word)
    if once[word] then
      error(word .. ": given twice (first on line " .. once[word] .. ")", 3)
    end
    once[word] = caller_line()
  end

  local function list_of(word, t, pattern, what)
    if type(t) == "string" then
      t = { t }
    end
    if type(t) ~= "table" or #t == 0 then
      error(word .. ": expected a name or a list of names, e.g. " .. word .. ' { "a", "b" }', 3)
    end
    for i = 1, #t do
      if type(t[i]) ~= "string" or not (t[i]:match(pattern) or (what and t[i]:match(what))) then
        error(string.format("%s: entry %d, %s, is not a valid name", word, i,
          type(t[i]) == "string" and string.format("%q", t[i]) or type(t[i])), 3)
      end
    end
    return t
  end

  function w.base(name)
    only_once("base")
    if name ~= "default" then
      error(string.format("base: only \"default\" can be a base today, got %s",
        type(name) == "string" and string.format("%q", name) or type(name)), 2)
    end
    spec.base = name
  end

  -- "cloud": Debian's cloud kernel, the base image's; "lean": built from Debian's source with
  -- everything a test guest uses built in (scripts/imagelib/lean.py)
  function w.kernel(name)
    only_once("kernel")
    if name ~= "cloud" and name ~= "lean" then
      error(string.format('kernel: expected "cloud" or "lean", got %s',
        type(name) == "string" and string.format("%q", name) or type(name)), 2)
    end
    spec.kernel = name
    spec.kernel_line = caller_line()
  end

  function w.packages(list)
    local line = caller_line()
    for _, name in ipairs(list_of("packages", list, PACKAGE_NAME, PACKAGE_ARCH)) do
      spec.packages[#spec.packages + 1] = { name = name, line = line }
    end
  end

  function w.modules(list)
    local line = caller_line()
    for _, name in ipairs(list_of("modules", list, MODULE_NAME)) do
      spec.modules[#spec.modules + 1] = { name = name, line = line }
    end
  end

  local FILE_OPTS = { mode = true, owner = true, group = true }

  function w.copy(dst, src, opts)
    check_path("copy", "destination", dst)
    if type(src) ~= "string" or src == "" then
      error("copy: source must be a host path (relative to the recipe's directory), got " ..
        type(src), 2)
    end
    opts = check_options("copy", opts, FILE_OPTS)
    spec.copies[#spec.copies + 1] = {
      dst = dst, src = src, mode = check_mode("copy", opts.mode),
      owner = opt_owner("copy", opts, "owner"), group = opt_owner("copy", opts, "group"),
      line = caller_line(),
    }
  end

  function w.write(dst, content, opts)
    check_path("write", "destination", dst)
    if type(content) ~= "string" then
      error("write: content must be a string, got " .. type(content), 2)
    end
    opts = check_options("write", opts, FILE_OPTS)
    spec.writes[#spec.writes + 1] = {
      dst = dst, content = content, mode = check_mode("write", opts.mode),
      owner = opt_owner("write", opts, "owner"), group = opt_owner("write", opts, "group"),
      line = caller_line(),
    }
  end

  function w.dir(dst, opts)
    check_path("dir", "path", dst)
    opts = check_options("dir", opts, FILE_OPTS)
    spec.dirs[#spec.dirs + 1] = {
      dst = dst, mode = check_mode("dir", opts.mode),
      owner = opt_owner("dir", opts, "owner"), group = opt_owner("dir", opts, "group"),
      line = caller_line(),
    }
  end

  function w.user(u)
    if type(u) == "string" then
      u = { name = u }
    end
    if type(u) ~= "table" then
      error('user: expected a name or a table, e.g. user { name = "redis", home = "/var/lib/redis" }', 2)
    end
    check_options("user", u, { name = true, uid = true, gid = true, home = true, shell = true })
    check_name("user", "name", u.name, USER_NAME)
    for _, k in ipairs({ "home", "shell" }) do
      if u[k] ~= nil then
        check_path("user", k, u[k])
      end
    end
    spec.users[#spec.users + 1] = {
      name = u.name, uid = opt_id("user", "uid", u.uid), gid = opt_id("user", "gid", u.gid),
      home = u.home or NULL, shell = u.shell or NULL, line = caller_line(),
    }
  end

  function w.group(g)
    if type(g) == "string" then
      g = { name = g }
    end
    if type(g) ~= "table" then
      error('group: expected a name or a table, e.g. group { name = "redis", gid = 200 }', 2)
    end
    check_options("group", g, { name = true, gid = true })
    check_name("group", "name", g.name, USER_NAME)
    spec.groups[#spec.groups + 1] = {
      name = g.name, gid = opt_id("group", "gid", g.gid), line = caller_line(),
    }
  end

  function w.cmdline(args, opts)
    only_once("cmdline")
    if type(args) ~= "string" or args:find("[\n%z]") then
      error("cmdline: expected one line of kernel arguments, got " .. type(args), 2)
    end
    opts = check_options("cmdline", opts, { replace = true })
    spec.cmdline = args
    spec.cmdline_replace = opts.replace == true
  end

  function w.hostname(h)
    only_once("hostname")
    if type(h) ~= "string" or #h > 63 or not h:match("^[A-Za-z0-9][A-Za-z0-9-]*$") then
      error("hostname: expected a host name (letters, digits, '-', up to 63), got " ..
        (type(h) == "string" and string.format("%q", h) or type(h)), 2)
    end
    spec.hostname = h
  end

  function w.pack(how)
    only_once("pack")
    if how ~= "auto" and how ~= "initramfs" and how ~= "disk" then
      error('pack: expected "auto", "initramfs" or "disk", got ' .. tostring(how), 2)
    end
    spec.pack = how
  end

  return w
end

-- The pure parts of the standard library a recipe may use.
local function sandbox(words)
  local env = {}
  for _, k in ipairs({ "assert", "error", "ipairs", "next", "pairs", "pcall", "select",
    "tonumber", "tostring", "type", "xpcall", "rawequal", "rawget", "rawlen", "rawset",
    "setmetatable", "getmetatable" }) do
    env[k] = _G[k]
  end
  for _, lib in ipairs({ "string", "table", "math", "utf8" }) do
    env[lib] = {}
    for k, v in pairs(_G[lib]) do
      if not (lib == "math" and (k == "random" or k == "randomseed")) then
        env[lib][k] = v
      end
    end
  end
  for k, v in pairs(words) do
    env[k] = v
  end
  return setmetatable(env, {
    __index = function(_, k)
      error(string.format("unknown word '%s' (a recipe knows: %s)", tostring(k), WORDS), 2)
    end,
  })
end

function evaluate(chunk)
  local spec = new_spec()
  debug.setupvalue(chunk, 1, sandbox(make_words(spec)))
  chunk()
  return spec
end

function is_array(t)
  return getmetatable(t) == ARRAY
end

function is_null(v)
  return v == NULL
end

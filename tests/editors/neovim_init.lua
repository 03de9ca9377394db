-- init.lua of the headless Neovim test: the user-facing snippet as shipped, then only what a test must
-- change (the server command of this checkout and the tiny model), the way a user overrides a config.
dofile(vim.env.WAFERLINE_NVIM_CONFIG)
vim.lsp.config('waferline', {
  cmd = vim.json.decode(vim.env.WAFERLINE_NVIM_CMD),
  cmd_env = { PYTHONPATH = vim.env.WAFERLINE_REPO },
  init_options = { model = vim.env.WAFERLINE_MODEL, maxNewTokens = 16 },
})

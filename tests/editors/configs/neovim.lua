-- Waferline in Neovim 0.11+ with the built-in LSP client (no plugin). Put this in init.lua.
-- `waferline serve` is the server of the Python environment waferline is installed in; use its full
-- path, or { '/path/to/venv/bin/python', '-m', 'lsp_server' }, if that environment is not on PATH.
vim.lsp.config('waferline', {
  cmd = { 'waferline', 'serve' },
  filetypes = {
    'python', 'javascript', 'javascriptreact', 'typescript', 'typescriptreact',
    'go', 'rust', 'c', 'cpp', 'java', 'sh', 'bash', 'lua',
  },
  root_markers = { '.git', 'pyproject.toml', 'package.json' },
  -- The same keys as VS Code's `waferline.*` settings.
  init_options = { model = 'smollm2-135m', maxNewTokens = 64, mode = 'line', hardware = 'wse3' },
})
vim.lsp.enable('waferline')

-- Code actions work from 0.11: `gra` (or :lua vim.lsp.buf.code_action()) offers
-- "Complete here (waferline)" and, on an empty function, "Complete function body (waferline)".
-- Without ghost text, completions also come as items of the completion menu (<C-x><C-o>).

-- Ghost text needs Neovim 0.12 (vim.lsp.inline_completion); Tab accepts the suggestion.
if vim.lsp.inline_completion and vim.lsp.inline_completion.enable then
  vim.lsp.inline_completion.enable(true)
  vim.keymap.set('i', '<Tab>', function()
    if not vim.lsp.inline_completion.get() then
      return '<Tab>'
    end
  end, { expr = true, desc = 'Accept the waferline suggestion' })
end

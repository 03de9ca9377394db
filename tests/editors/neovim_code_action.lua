-- Run by test_neovim.py after the buffer is loaded: waits for our server, puts the cursor at the end of
-- the last line, applies "Complete here" through vim.lsp.buf.code_action and records the buffer before
-- and after in the JSON file $WAFERLINE_NVIM_RESULT. Every wait has a timeout; Neovim always quits.
local result_path = vim.env.WAFERLINE_NVIM_RESULT
local START_MS, READY_MS, EDIT_MS = 60000, 120000, 60000

local function buffer_text()
  return table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\n')
end

local function finish(result)
  local f = assert(io.open(result_path, 'w'))
  f:write(vim.json.encode(result))
  f:close()
  vim.cmd('qall!')
end

local ok, err = pcall(function()
  local client
  assert(
    vim.wait(START_MS, function()
      client = vim.lsp.get_clients({ name = 'waferline', bufnr = 0 })[1]
      return client ~= nil and client.initialized
    end, 50),
    'the waferline server did not start and initialize'
  )

  local state
  assert(
    vim.wait(READY_MS, function()
      local reply = client:request_sync('waferline/status', {}, 5000, 0)
      state = reply and reply.result and reply.result.state
      return state == 'ready' or state == 'error'
    end, 200),
    'the model did not load (last state: ' .. tostring(state) .. ')'
  )
  assert(state == 'ready', 'the server reports state ' .. tostring(state))

  local row = vim.api.nvim_buf_line_count(0)
  local col = #vim.api.nvim_buf_get_lines(0, row - 1, row, false)[1]
  local before = buffer_text()
  local titles = {}
  vim.lsp.buf.code_action({
    range = { start = { row, col }, ['end'] = { row, col } },
    filter = function(action)
      table.insert(titles, action.title)
      return action.title:find('Complete here', 1, true) ~= nil
    end,
    apply = true,
  })
  local changed = vim.wait(EDIT_MS, function()
    return buffer_text() ~= before
  end, 50)
  finish({ ok = changed, before = before, after = buffer_text(), titles = titles,
           error = (not changed) and 'the buffer did not change' or nil })
end)
if not ok then
  finish({ ok = false, error = tostring(err) })
end

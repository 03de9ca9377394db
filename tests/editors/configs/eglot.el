;;; Waferline with Emacs's built-in LSP client, eglot (Emacs 29+). Put this in init.el.
;; `waferline serve' is the server of the Python environment waferline is installed in; give its full
;; path, or ("/path/to/venv/bin/python" "-m" "lsp_server"), if that environment is not on PATH.
;; eglot runs one server per major mode: this replaces any other server for these modes.
(with-eval-after-load 'eglot
  (add-to-list 'eglot-server-programs
               '((python-mode python-ts-mode
                  js-mode js-ts-mode typescript-ts-mode tsx-ts-mode
                  go-mode go-ts-mode rust-mode rust-ts-mode
                  c-mode c-ts-mode c++-mode c++-ts-mode java-mode java-ts-mode
                  sh-mode bash-ts-mode lua-mode lua-ts-mode)
                 . ("waferline" "serve"
                    ;; The same keys as VS Code's `waferline.*' settings.
                    :initializationOptions (:model "smollm2-135m" :maxNewTokens 64
                                            :mode "line" :hardware "wse3")))))

;; Changes while running go through workspace/didChangeConfiguration:
;; (setq-default eglot-workspace-configuration '(:waferline (:maxNewTokens 32)))

;; Completions arrive through completion-at-point (C-M-i, or corfu/company).
;; "Complete here (waferline)" is a refactor.rewrite code action:
;;   M-x eglot-code-action-rewrite   (or M-x eglot-code-actions)

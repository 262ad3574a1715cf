/* Granite chat formatting and where an adapter's control token goes.
 *
 * Granite 4 (and 3.1+) renders a conversation as
 *   <|start_of_role|>ROLE<|end_of_role|>CONTENT<|end_of_text|>\n   (per turn)
 *   <|start_of_role|>assistant<|end_of_role|>                      (generation prompt)
 * Granite 3.0, recognised by its template's <|user|> / <|assistant|> markers,
 * as its chat_template renders it:
 *   <|system|>\nDEFAULT SYSTEM\n          (when no message is a system one)
 *   <|system|>\nCONTENT\n   <|user|>\nCONTENT\n   <|assistant|>\nCONTENT<|end_of_text|>
 *   <|assistant|>\n                       (generation prompt, after the last message)
 * Any other template is not executed: the Granite 4 form is used and
 * sr_chat_load warns (text can always be given as is with the raw path).
 * The end-of-turn marker is tokenizer_config.json's eos_token when the file
 * names one; the role markers are Granite's (the file must not contradict
 * them: a tokenizer_config.json whose special tokens lack them falls back to
 * the same strings as plain text, which is what HF's template would emit).
 *
 * Granite Switch (spec granite-switch.md §6.3): a LoRA adapter's control
 * token goes at position 0; an aLoRA adapter's immediately before the last
 * occurrence of its invocation text in the last user message that contains
 * it, else immediately before the generation prompt.  One control token per
 * render.  The kind of each adapter (and an aLoRA invocation text) comes
 * from config.json `adapter_kinds` when present, else from the adapter map
 * the composer writes into tokenizer_config.json's chat_template; otherwise
 * it is unknown and placed as aLoRA (the base prefix stays shareable). */
#ifndef SR_CHAT_H
#define SR_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/config.h"
#include "runtime/error.h"

typedef enum sr_adapter_kind {
    SR_ADAPTER_UNKNOWN,
    SR_ADAPTER_LORA,
    SR_ADAPTER_ALORA,
} sr_adapter_kind;

typedef struct sr_chat_adapter {
    sr_adapter_kind kind;
    char *invocation;           /* aLoRA invocation text, or NULL (generation prompt) */
} sr_chat_adapter;

typedef enum sr_chat_style {
    SR_CHAT_ROLE_MARKERS,       /* Granite 3.1+ / 4 / Switch (the default) */
    SR_CHAT_GRANITE_3_0,        /* <|system|>\n ... <|user|>\n ... <|assistant|>\n */
} sr_chat_style;

typedef struct sr_chat {
    char *start_role, *end_role, *end_text;
    sr_chat_style style;
    char *default_system;       /* GRANITE_3_0: the template's text when no system turn */
    bool unknown_template;      /* a chat_template in neither known form */
    int n_adapters;
    sr_chat_adapter *adapters;  /* [n_adapters], adapter index k at [k-1] */
    const char *kinds_from;     /* "config.json", "chat_template" or NULL */
} sr_chat;

typedef struct sr_chat_msg {
    const char *role;           /* "system", "user", "assistant", ... */
    const char *content;
} sr_chat_msg;

/* Reads DIR/tokenizer_config.json when it exists (absent is fine) and the
 * adapter kinds for cfg's adapters.  On failure *chat is zeroed and err names
 * the file and the field. */
int sr_chat_load(const char *model_dir, const sr_config *cfg, sr_chat *chat, sr_error *err);
/* Same from texts in memory (either may be NULL); `source` labels messages. */
int sr_chat_parse(const char *tokenizer_config, const char *config_json, const char *source,
                  const sr_config *cfg, sr_chat *chat, sr_error *err);
/* Safe on a zeroed or already freed chat. */
void sr_chat_free(sr_chat *chat);

const char *sr_adapter_kind_name(sr_adapter_kind k);     /* "LoRA", "aLoRA", "unknown" */

/* Renders msgs (and the generation prompt when add_generation_prompt).  On
 * success *text is a new NUL-terminated string (sr_free) of *len bytes and
 * *ctrl_at the byte offset where adapter `adapter`'s control token goes, or
 * -1 when adapter is 0 (none).  adapter is 0..chat->n_adapters; `kind`
 * overrides the adapter's kind unless SR_ADAPTER_UNKNOWN. */
int sr_chat_render(const sr_chat *chat, const sr_chat_msg *msgs, size_t n,
                   bool add_generation_prompt, int adapter, sr_adapter_kind kind, char **text,
                   size_t *len, int64_t *ctrl_at, sr_error *err);

#endif

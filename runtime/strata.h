/* strata: the public C API.  Text in, text out with Granite and Granite
 * Switch models.
 *
 *   strata_model      a loaded model directory (config.json, safetensors,
 *                     tokenizer.json, tokenizer_config.json); read-only once
 *                     open, shared by any number of sessions and threads.
 *   strata_session    one sequence: its KV cache, the logits of its last
 *                     token and its sampler.  Use a session from one thread
 *                     at a time; separate sessions may run in parallel.
 *                     A model placed on devices (strata_model_params.devices)
 *                     runs one session at a time: its plan holds the KV cache
 *                     of one sequence on the tiers.
 *
 * A typical program:
 *
 *   strata_error err;
 *   strata_model *m;
 *   if (strata_model_open("MODEL_DIR", NULL, &m, &err)) { puts(err.message); ... }
 *   strata_session *s;
 *   strata_session_create(m, NULL, &s, &err);
 *   int32_t *ids; size_t n;
 *   strata_tokenize(m, "Hello", 5, 0, &ids, &n, &err);
 *   strata_generate_params gp = strata_generate_default_params();
 *   gp.max_tokens = 16; gp.on_token = print_piece; gp.user = m;
 *   strata_generate(s, ids, n, &gp, NULL, &err);
 *   strata_free(ids); strata_session_free(s); strata_model_free(m);
 *
 * Conventions: functions that can fail return a strata_status (0 =
 * STRATA_OK) and fill the caller's strata_error (which may be NULL) with the
 * code and a message that names the file, tensor, field or argument.  There
 * is no global state; errors never go to a hidden "last error".  Arrays and
 * strings the API returns are freed with strata_free.  Token ids are int32_t;
 * text is UTF-8 with an explicit length. */
#ifndef STRATA_H
#define STRATA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define STRATA_API_VERSION 5     /* 2: placement (devices, max_memory, ...);
                                    3: strata_model_params.logical_gpus;
                                    4: strata_model_info.kernel_layout_bytes;
                                    5: strata_model_params.kv_type,
                                       strata_model_info.kv_type */

/* ---- errors ---------------------------------------------------------------- */

typedef enum strata_status {
    STRATA_OK = 0,
    STRATA_ERR_ARGUMENT,        /* a bad argument: NULL, out of range, unknown adapter name */
    STRATA_ERR_IO,              /* a file is missing or cannot be read */
    STRATA_ERR_FORMAT,          /* a model or tokenizer file is malformed or unsupported */
    STRATA_ERR_MEMORY,          /* out of memory */
    STRATA_ERR_CONTEXT,         /* the tokens do not fit the session's context */
    STRATA_ERR_NO_TOKENIZER,    /* text asked of a model without tokenizer.json */
    STRATA_ERR_STATE,           /* called in the wrong state (e.g. sampling before any feed) */
    STRATA_ERR_NUMERIC,         /* no finite logit to choose from */
    STRATA_ERR_UNSUPPORTED,     /* something this build cannot do (e.g. a device placement) */
} strata_status;

typedef struct strata_error {
    strata_status code;
    char message[1024];         /* "" when code is STRATA_OK */
} strata_error;

/* e->message, or "" for a NULL e. */
const char *strata_error_message(const strata_error *e);
/* "ok", "bad argument", "i/o error", ... */
const char *strata_status_string(strata_status code);

/* Frees anything the API returned (token arrays, text). NULL is fine. */
void strata_free(void *p);

/* ---- models ---------------------------------------------------------------- */

typedef struct strata_model strata_model;

typedef struct strata_model_params {
    int n_threads;              /* compute threads of every session; 0: OpenMP's default */
    int64_t n_ctx;              /* default session context; 0: max_position_embeddings,
                                   at most 4096 */
    int check_finite;           /* refuse weights holding NaN or Inf (scans them at load) */
    const char *tokenizer;      /* tokenizer.json to use; NULL: DIR/tokenizer.json if any */
    /* Placement, as `strata plan` takes it.  devices: NULL or "cpu" runs every
     * unit on the CPU (the fast path; the fields below must then be unset);
     * "sim:2x512MiB,sim:1GiB" simulated accelerators (host memory with
     * their own budgets, synchronous copies: for tests and planning);
     * "cuda" the GPUs present (STRATA_ERR_UNSUPPORTED where this build or
     * machine cannot run on them).  A placed model is planned for n_ctx
     * positions (default_ctx) and one sequence at a time; each unit's
     * weights are copied onto its tier, host-tier layers are streamed to an
     * accelerator or run on the CPU.  Logits are bit-identical to the CPU
     * run on sim devices, and differ from it on cuda only by the CUDA
     * kernels' f32 rounding (the CUDA tests hold the golden models to
     * |Δlogit| <= 1e-4; they have not run on a GPU yet).  See
     * strata_model_placement. */
    const char *devices;
    /* Called while loading with the fraction of the weight bytes read so far
     * (0..1, ends with 1); NULL: none. */
    void (*progress)(double fraction, void *user);
    void *progress_user;
    /* (API version 2) */
    const char *max_memory;     /* budgets: "cuda:0=3GiB,1=6GiB,cpu=20GiB" or "0=3GiB";
                                   NULL: free memory, available RAM - 1 GiB */
    const char *strategy;       /* "auto" (NULL), "balanced", "balanced_low_0", "sequential" */
    const char *device_map;     /* accelerate device-map JSON file; replaces strategy */
    const char *host_exec;      /* host-tier layers: "auto" (NULL), "stream", "cpu" */
    int prefetch;               /* streaming prefetch distance: 0 the default (2, 1 when
                                   tight), n > 0 that distance, -1 none */
    /* (API version 3) */
    int logical_gpus;           /* with devices "cuda": each GPU split into this many
                                   devices cuda:P.0, cuda:P.1, ... with 1/N of its memory
                                   (max_memory indices then count these); 0 or 1: no
                                   split; other devices refuse N > 1 */
    /* (API version 5) */
    const char *kv_type;        /* KV cache elements of every session: "f32" (NULL, the
                                   default: what the f32 reference computes) or "bf16"
                                   (half the memory; each key and value rounded to
                                   nearest even once, as transformers keeps them for
                                   a bf16 model).  Not on CUDA devices. */
} strata_model_params;

strata_model_params strata_model_default_params(void);

/* Opens a model directory.  params may be NULL (the defaults).  On failure
 * *out is NULL and nothing is left allocated. */
strata_status strata_model_open(const char *dir, const strata_model_params *params,
                                strata_model **out, strata_error *err);
/* Frees the model; every session of it must be freed first. */
void strata_model_free(strata_model *m);

typedef struct strata_model_info {
    int32_t vocab_size;         /* embedding rows */
    int n_layers;               /* decoder layers */
    int n_adapters;             /* Granite Switch adapters (0: plain Granite) */
    int64_t max_position_embeddings;
    int64_t default_ctx;        /* what a session gets with n_ctx 0 */
    int32_t eos_token;          /* config eos_token_id, -1 if none */
    int32_t bos_token;          /* config bos_token_id, -1 if none */
    int has_tokenizer;
    const char *architecture;   /* "granite", "granite_switch", ... */
    const char *generation;     /* switch generation: "none", "A (KV hiding)", ... */
    uint64_t weight_bytes;      /* stored bytes of the weights (quantized size) */
    /* host memory the CPU kernels keep beside the weights: the 16-row tiles of
     * the bf16 weights (AVX-512 CPUs) and, under STRATA_KERNELS=int8, of the
     * 4-bit and 8-bit ones (0 otherwise, and for a model placed on devices) */
    uint64_t kernel_layout_bytes;
    const char *kv_type;        /* "f32" or "bf16" (strata_model_params.kv_type) */
} strata_model_info;

void strata_model_get_info(const strata_model *m, strata_model_info *info);

/* Bytes of one session's state (KV cache + per-position data) for n_ctx
 * positions (0: the default). */
uint64_t strata_model_session_bytes(const strata_model *m, int64_t n_ctx);

/* ---- placement (API version 2) ---------------------------------------------- */

#define STRATA_MAX_TIERS 17     /* 16 accelerators + the host */

typedef struct strata_tier_usage {
    char name[32];              /* "sim:0", "cuda:1"; the host "cpu" comes last */
    uint64_t budget;            /* the most the plan may use there */
    /* what the plan counted there (before anything was loaded onto it) */
    uint64_t planned;           /* weights + kv + staging + derived + reserve, <= budget */
    uint64_t weights;           /* stored bytes of the units placed there */
    uint64_t kv;                /* KV cache of the layers that run there */
    uint64_t staging;           /* slots streamed layers are copied into */
    uint64_t derived;           /* f32 norms / LoRA stacks / block scales of the units
                                   that run there (built at load) */
    uint64_t reserve;           /* run scratch: workspace, activations, logits */
    int n_units;                /* units whose weights live there */
    /* what the run holds there now (<= planned) */
    uint64_t used, peak;
} strata_tier_usage;

typedef struct strata_placement {
    int n_tiers;                /* 0: not placed (the CPU fast path); nothing else is set */
    strata_tier_usage tiers[STRATA_MAX_TIERS];
    const char *strategy;       /* "balanced", "balanced_low_0", "sequential", "map" */
    const char *host_exec;      /* "stream" or "cpu": what host-tier decoder layers do */
    const char *host_exec_reason;   /* the planner's why */
    int n_streamed;             /* decoder layers streamed per token */
    const char *stream_tier;    /* the accelerator holding the staging slots, or NULL */
    int prefetch, slots;
    uint64_t stream_bytes_per_token;    /* weight bytes copied per forward pass (planned) */
    double predicted_s_per_token;       /* the plan's time model, stated parameters */
    int64_t ctx;                /* positions planned for (the most a session may hold) */
    int async_copies;           /* 1: copies overlap compute (CUDA streams); 0: they
                                   complete in their call (cpu, sim): no overlap */
} strata_placement;

/* Where the model's units are and what each tier holds.  Strings stay valid
 * until strata_model_free. */
strata_status strata_model_placement(const strata_model *m, strata_placement *out,
                                     strata_error *err);

/* ---- adapters (Granite Switch) --------------------------------------------- */

typedef enum strata_adapter_kind {
    STRATA_ADAPTER_UNKNOWN = 0,
    STRATA_ADAPTER_LORA,        /* control token at position 0 */
    STRATA_ADAPTER_ALORA,       /* control token before the invocation / generation prompt */
} strata_adapter_kind;

typedef struct strata_adapter_info {
    int index;                  /* 1..n_adapters (0 is the base model) */
    const char *name;           /* config adapter_names, or "adapter_K" */
    strata_adapter_kind kind;   /* from config.json adapter_kinds, else the chat template */
    int rank;                   /* adapter_ranks */
    int32_t token;              /* its control token id */
    const char *invocation;     /* aLoRA invocation text, or NULL */
} strata_adapter_info;

/* index 1..n_adapters.  Strings stay valid until strata_model_free. */
strata_status strata_model_adapter(const strata_model *m, int index, strata_adapter_info *info,
                                   strata_error *err);
/* Adapter index of a name (1..n_adapters), or -1 (err says which names exist). */
int strata_model_find_adapter(const strata_model *m, const char *name, strata_error *err);
/* "LoRA", "aLoRA", "unknown" */
const char *strata_adapter_kind_name(strata_adapter_kind kind);

/* ---- text ------------------------------------------------------------------ */

enum {
    /* Special tokens written in the text are plain text (default: matched,
     * as HF's encode does). */
    STRATA_TOKENIZE_SPECIAL_AS_TEXT = 1u << 0,
    /* Apply the tokenizer's post-processor (BOS/EOS), if it has one. */
    STRATA_TOKENIZE_ADD_SPECIAL = 1u << 1,
};

/* text[0..len) -> *ids (strata_free), *n ids. */
strata_status strata_tokenize(const strata_model *m, const char *text, size_t len, unsigned flags,
                              int32_t **ids, size_t *n, strata_error *err);
/* ids -> UTF-8 text (NUL-terminated, strata_free); skip_special drops
 * special tokens.  Ill-formed UTF-8 becomes U+FFFD. */
strata_status strata_detokenize(const strata_model *m, const int32_t *ids, size_t n,
                                int skip_special, char **text, size_t *len, strata_error *err);
/* The raw bytes one token stands for (for streaming: concatenate the pieces
 * of consecutive tokens, they may split a UTF-8 character), or NULL for an
 * id outside the tokenizer. Valid until strata_model_free. */
const char *strata_token_piece(const strata_model *m, int32_t token, size_t *len);
/* 1 if token is one of the tokenizer's special added tokens (EOS, role
 * markers, control tokens), else 0. */
int strata_token_is_special(const strata_model *m, int32_t token);

/* ---- chat ------------------------------------------------------------------ */

typedef struct strata_chat_message {
    const char *role;           /* "system", "user", "assistant", ... */
    const char *content;
} strata_chat_message;

/* Granite chat format -> token ids.  With add_generation_prompt the ids end
 * with the assistant's turn opening.  adapter (0: none, else 1..n) inserts
 * that adapter's control token where Granite Switch's template places it
 * (LoRA: position 0; aLoRA: before the last occurrence of its invocation
 * text in the last user message that has it, else before the generation
 * prompt); kind overrides the model's kind for it (UNKNOWN: keep the
 * model's; an unknown kind is placed as aLoRA). */
strata_status strata_chat_tokens(const strata_model *m, const strata_chat_message *msgs, size_t n,
                                 int add_generation_prompt, int adapter, strata_adapter_kind kind,
                                 int32_t **ids, size_t *n_ids, strata_error *err);

/* ---- sessions -------------------------------------------------------------- */

typedef struct strata_session strata_session;

typedef struct strata_sampling {
    float temperature;          /* <= 0: greedy (argmax) */
    int top_k;                  /* <= 0: off; tokens tied with the k-th stay (HF) */
    float top_p;                /* <= 0 or >= 1: off (a zeroed struct means off) */
    uint64_t seed;              /* the same seed reproduces a session */
} strata_sampling;

typedef struct strata_session_params {
    int64_t n_ctx;              /* positions; 0: the model's default_ctx */
    strata_sampling sampling;   /* default: greedy */
} strata_session_params;

strata_session_params strata_session_default_params(void);

strata_status strata_session_create(const strata_model *m, const strata_session_params *params,
                                    strata_session **out, strata_error *err);
void strata_session_free(strata_session *s);

/* Appends n tokens (one forward pass, chunked for long inputs); the
 * logits of the last become current.  Fails with STRATA_ERR_CONTEXT when they
 * do not fit, STRATA_ERR_ARGUMENT for an id outside the vocabulary; after a
 * failed feed the session holds the same positions as before. */
strata_status strata_session_feed(strata_session *s, const int32_t *tokens, size_t n,
                                  strata_error *err);
/* Makes the session's sequence equal to tokens[0..n): keeps the longest
 * cached prefix they share (at most n-1 positions, so the last token is
 * recomputed and its logits become current) and feeds the rest.  *reused
 * (may be NULL) receives the number of kept positions.  This is how an aLoRA
 * follow-up or the next chat turn avoids recomputing the shared prefix.  A
 * session that already holds exactly tokens[0..n) with current logits is left
 * as it is (*reused = n).  More than the context is refused before anything
 * cached is dropped. */
strata_status strata_session_sync(strata_session *s, const int32_t *tokens, size_t n,
                                  size_t *reused, strata_error *err);
/* Keeps the first n positions (n <= length); with n < length no logits are
 * current until the next feed (n == length changes nothing). */
strata_status strata_session_truncate(strata_session *s, size_t n, strata_error *err);
void strata_session_reset(strata_session *s);

size_t strata_session_length(const strata_session *s);
int64_t strata_session_ctx(const strata_session *s);
/* The cached token ids [length]. */
const int32_t *strata_session_tokens(const strata_session *s);
/* Adapter index a_i the switch gave position pos (0 = base), -1 if pos is
 * not cached. */
int strata_session_adapter_at(const strata_session *s, size_t pos);
/* Logits [vocab_size] of the last fed token, or NULL when none is current. */
const float *strata_session_logits(const strata_session *s);

/* Sampling parameters of later strata_session_sample / strata_generate calls
 * (restarts the random stream from sp->seed). */
strata_status strata_session_set_sampling(strata_session *s, const strata_sampling *sp,
                                          strata_error *err);
/* Chooses a token from the current logits (does not feed it). */
strata_status strata_session_sample(strata_session *s, int32_t *token, strata_error *err);

/* Bytes a placed model's session moved between tiers since it was created or
 * its counters were reset (all zero on the CPU fast path). */
typedef struct strata_transfer_stats {
    uint64_t passes;            /* forward passes: prefill chunks + decode steps */
    uint64_t tokens;            /* tokens they processed */
    uint64_t streamed;          /* weight bytes copied into staging slots */
    uint64_t activations;       /* activations hopping between tiers */
    uint64_t metadata;          /* per-token step data sent to the accelerators */
    uint64_t logits;            /* logits brought back to the host */
    double run_s;               /* wall time of those passes */
    double copy_s;              /* of which the host spent in streamed copies */
    double overlap;             /* fraction of the copy time hidden behind compute: 0 with
                                   synchronous copies (cpu, sim), -1 where not measured */
} strata_transfer_stats;

strata_status strata_session_transfers(const strata_session *s, strata_transfer_stats *out,
                                       strata_error *err);
void strata_session_reset_transfers(strata_session *s);

/* ---- generation ------------------------------------------------------------ */

/* Called with every generated token and the adapter index that produced it
 * (that of the position whose logits chose it).  Return 0 to go on, non-zero
 * to stop after this token. */
typedef int (*strata_token_callback)(int32_t token, int adapter, void *user);

#define STRATA_STOP_EOS (-2)    /* stop_token: the model's eos_token_id */

typedef struct strata_generate_params {
    int64_t max_tokens;         /* at most this many new tokens (default 128) */
    int32_t stop_token;         /* STRATA_STOP_EOS (default), an id, or -1: none */
    const char *stop_text;      /* stop once the generated bytes contain it (kept in the
                                   output, as HF's stop_strings); NULL: none */
    strata_token_callback on_token;
    void *user;
} strata_generate_params;

strata_generate_params strata_generate_default_params(void);

typedef enum strata_stop_reason {
    STRATA_STOP_LENGTH,         /* max_tokens reached */
    STRATA_STOP_TOKEN,          /* the stop token was generated */
    STRATA_STOP_TEXT,           /* the stop text appeared */
    STRATA_STOP_CALLBACK,       /* on_token asked to stop */
    STRATA_STOP_CONTEXT,        /* the context is full */
} strata_stop_reason;

typedef struct strata_generate_result {
    int64_t n_prompt;           /* tokens fed before generating */
    int64_t n_generated;
    strata_stop_reason stop;
    double prefill_s;           /* wall time of feeding the prompt */
    double decode_s;            /* wall time after the first token */
    double ttft_s;              /* start to first token */
} strata_generate_result;

/* Feeds prompt[0..n_prompt) (may be empty when logits are current, e.g.
 * after strata_session_sync) and generates.  Each generated token but the
 * last is fed back; the last is not (nothing needs its logits yet): feed or
 * sync it before continuing the sequence.  result may be NULL. */
strata_status strata_generate(strata_session *s, const int32_t *prompt, size_t n_prompt,
                              const strata_generate_params *params, strata_generate_result *result,
                              strata_error *err);

#ifdef __cplusplus
}
#endif

#endif

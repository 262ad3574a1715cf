/* placeholder: implemented by its owner */
typedef int sr_placeholder_adapter_meta;

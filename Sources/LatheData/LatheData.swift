// LatheData: data sets, loaders, batching, splits and tokenizers.

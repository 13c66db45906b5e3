"""The public functions: the forward convolution (:mod:`.conv`) and its backward passes and the transposed
convolution (:mod:`.backward`). Each looks its plan up in the plan cache, makes it on a miss, and calls it."""

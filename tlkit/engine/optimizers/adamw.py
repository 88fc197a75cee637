"""AdamW: Adam with decoupled weight decay (default 0.004), as keras.optimizers.AdamW."""
from tlkit.engine.optimizers.adam import Adam


class AdamW(Adam):
    """Adam whose every step first does ``w -= w * weight_decay * lr`` (Loshchilov & Hutter).

    >>> opt = AdamW(learning_rate=1e-3, weight_decay=0.004)
    >>> opt.exclude_from_weight_decay(var_names=["bias"])
    """

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, clipnorm=None, clipvalue=None, global_clipnorm=None, name="adamw", **kwargs):
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         amsgrad=amsgrad, weight_decay=weight_decay, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm, name=name, **kwargs)
        if self.weight_decay is None:
            raise ValueError("Argument `weight_decay` must be a float. Received: weight_decay=None")

/**
 * The names our UNet exports use, and that capability detection reads. The export tool writes the
 * same names; Optimum exports share the base three.
 */
export const UNET_INPUTS = Object.freeze({
  sample: 'sample',
  timestep: 'timestep',
  encoderHiddenStates: 'encoder_hidden_states',
  /** ControlNet: `down_block_residual_0` … `down_block_residual_11`, added to the down-block skips. */
  downBlockResidualPrefix: 'down_block_residual_',
  /** ControlNet: added to the mid block's output. */
  midBlockResidual: 'mid_block_residual',
  /** IP-Adapter: one scale per cross-attention layer. */
  ipAdapterScale: 'ip_adapter_scale',
});

/** Text tokens CLIP gives every prompt; image tokens (IP-Adapter) follow them. */
export const TEXT_TOKENS = 77;

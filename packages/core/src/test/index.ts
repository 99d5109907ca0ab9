/**
 * `@streamdiffusion/core/test`: helpers for testing code that builds on core (feature packages,
 * apps). Not needed at run time.
 */
export { createMockWrapper, type MockWrapper, type MockWrapperCall, type MockWrapperOptions, type MockWrapperParameters } from './mock-wrapper.js';

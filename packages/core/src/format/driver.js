export * from './backing.js';
export * from './options.js';

/** The gRPC status codes ptctl tells apart in Temporal's replies (grpc-js's `status` enum, without depending on it). */
export const GrpcStatus = {
  NOT_FOUND: 5,
  FAILED_PRECONDITION: 9,
  UNIMPLEMENTED: 12,
} as const;

/** The size of a guest page on the wire, in bytes: the only page size of version 2. */
export const PAGE_SIZE_BYTES = 4096;

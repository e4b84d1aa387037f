/* The trivial program of B5: what starting any process costs. */
int main(void)
{
    return 0;
}
